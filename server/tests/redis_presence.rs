//! Presence across nodes in a real Redis: members of every node listed, joins and leaves
//! announced on the room's channel in order with its messages, and the members of a node
//! whose heartbeat stopped reaped and announced as left. Time is passed in: no test waits for
//! a TTL.

mod common;

use common::*;
use relaycast::cluster::presence::{Change, Member, Presence};
use relaycast::cluster::subscriber::{Event, Subscriber, SubscriberConfig};
use relaycast_shared::*;
use std::time::Duration;

fn member(peer: &str, node: &str, since: u64) -> Member {
    Member {
        peer_id: PeerId::try_from(peer).unwrap(),
        name: DisplayName::try_from(peer).unwrap(),
        user: Some(UserId::try_from(format!("user-{peer}")).unwrap()),
        node: node.into(),
        since,
        rights: Rights::member(),
    }
}

const TTL: u64 = 3_000;

#[tokio::test]
async fn members_of_every_node_are_listed_and_a_dead_nodes_members_are_reaped() {
    let redis = RedisServer::start();
    let presence = Presence::default();
    let mut conn = redis.connection().await;
    let r = room("standup");
    let now = 1_800_000_000_000u64;
    let config = SubscriberConfig { probe_interval: Duration::from_secs(30), ..SubscriberConfig::default() };
    let (subscriber, mut events) = Subscriber::start(redis::Client::open(redis.url()).unwrap(), "n1", config);
    subscriber.subscribe(&r);
    // The subscription takes effect a moment after it is asked for: join until it is heard.
    presence.heartbeat(&mut conn, "n1", now, TTL).await.unwrap();
    presence.heartbeat(&mut conn, "n2", now, TTL).await.unwrap();
    let ada = member("ada", "n1", now);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        presence.join(&mut conn, &r, &ada).await.unwrap();
        if let Ok(Some(Event::Presence { change: Change::Joined(m), .. })) =
            tokio::time::timeout(Duration::from_millis(200), events.recv()).await
        {
            assert_eq!(m, ada);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the join was never heard");
    }
    let bo = member("bo", "n2", now + 10);
    presence.join(&mut conn, &r, &bo).await.unwrap();
    let heard = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
    assert_eq!(heard, Event::Presence { room: r.clone(), change: Change::Joined(bo.clone()) });
    assert_eq!(presence.members(&mut conn, &r, now + 100).await.unwrap(), vec![ada.clone(), bo.clone()]);

    // A leave is announced once, whoever removes the member.
    let cy = member("cy", "n1", now + 20);
    presence.join(&mut conn, &r, &cy).await.unwrap();
    assert!(presence.leave(&mut conn, &r, &cy.peer_id).await.unwrap());
    assert!(!presence.leave(&mut conn, &r, &cy.peer_id).await.unwrap());
    let mut got = vec![];
    for _ in 0..2 {
        got.push(tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap());
    }
    assert_eq!(got[1], Event::Presence { room: r.clone(), change: Change::Left(cy.peer_id.clone()) });

    // n2 stops its heartbeat (killed); n1 keeps renewing. Past n2's expiry its member is no
    // longer listed, and the next reap removes it and tells the room.
    let later = now + TTL + 1_000;
    presence.heartbeat(&mut conn, "n1", later, TTL).await.unwrap();
    assert_eq!(presence.members(&mut conn, &r, later).await.unwrap(), vec![ada.clone()]);
    assert_eq!(presence.reap(&mut conn, &r, later).await.unwrap(), vec![bo.peer_id.clone()]);
    assert!(presence.reap(&mut conn, &r, later).await.unwrap().is_empty(), "reaped once");
    let left = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
    assert_eq!(left, Event::Presence { room: r.clone(), change: Change::Left(bo.peer_id.clone()) });
    // A node that stops cleanly takes its heartbeat with it.
    presence.node_gone(&mut conn, "n1").await.unwrap();
    assert!(presence.members(&mut conn, &r, later).await.unwrap().is_empty());
}
