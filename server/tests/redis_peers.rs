//! Signaling across nodes, through a real Redis: a peer is found on its node while that
//! node's heartbeat holds, and what one node sends to another's inbox arrives in order, each
//! once.

mod common;

use common::*;
use relaycast::cluster::peers;
use relaycast::cluster::presence::Presence;
use relaycast::cluster::subscriber::{Event, Subscriber, SubscriberConfig};
use relaycast_shared::PeerId;
use std::time::Duration;

#[tokio::test]
async fn a_peer_on_another_node_is_found_and_reached_in_order() {
    let redis = RedisServer::start();
    let mut conn = redis.connection().await;
    let presence = Presence::default();
    let now = 1_800_000_000_000u64;
    presence.heartbeat(&mut conn, "n1", now, 3_000).await.unwrap();
    presence.heartbeat(&mut conn, "n2", now, 3_000).await.unwrap();
    let (p1, p2) = (PeerId::try_from("peer1").unwrap(), PeerId::try_from("peer2").unwrap());
    peers::register(&mut conn, &p1, "n1").await.unwrap();
    peers::register(&mut conn, &p2, "n2").await.unwrap();
    assert_eq!(peers::locate(&mut conn, &p2, now).await.unwrap().as_deref(), Some("n2"));
    assert_eq!(peers::locate(&mut conn, &PeerId::try_from("nobody").unwrap(), now).await.unwrap(), None);

    // n2 listens on its inbox; n1 sends it a hundred signals over its one connection.
    let config = SubscriberConfig { probe_interval: Duration::from_secs(30), ..SubscriberConfig::default() };
    let (_n2, mut events) = Subscriber::start(redis::Client::open(redis.url()).unwrap(), "n2", config);
    let deadline = std::time::Instant::now() + WAIT;
    while !peers::send(&mut conn, "n2", "hello?").await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "n2 never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..100 {
        assert!(peers::send(&mut conn, "n2", &format!("signal {i}")).await.unwrap());
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            Event::Direct { payload } if payload.starts_with("signal ") => got.push(payload),
            _ => {}
        }
    }
    assert_eq!(got, (0..100).map(|i| format!("signal {i}")).collect::<Vec<_>>(), "in order, each once");

    // n2's heartbeat lapses (it died): its peers are not found any more. A peer that left is
    // not found either.
    let later = now + 5_000;
    presence.heartbeat(&mut conn, "n1", later, 3_000).await.unwrap();
    assert_eq!(peers::locate(&mut conn, &p2, later).await.unwrap(), None);
    assert_eq!(peers::locate(&mut conn, &p1, later).await.unwrap().as_deref(), Some("n1"));
    peers::forget(&mut conn, &p1).await.unwrap();
    assert_eq!(peers::locate(&mut conn, &p1, later).await.unwrap(), None);
    assert!(!peers::send(&mut conn, "n9", "to nobody").await.unwrap(), "no node listens there");
}
