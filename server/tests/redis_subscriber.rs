//! A node's Redis subscription against a real redis-server: publications of the rooms it
//! listens to (and only those), and a rebuild reported as `Resync` when the pub/sub connection
//! is cut while the command connection stays up, when Redis is killed and restarted, and when
//! the connection goes deaf (its probe does not come back).

mod common;

use common::*;
use relaycast::cluster::room_log::RoomLog;
use relaycast::cluster::subscriber::{Event, Subscriber, SubscriberConfig};
use relaycast_shared::*;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

fn message(text: &str) -> RoomMessage {
    RoomMessage {
        seq: 0,
        from: PeerId::try_from("p").unwrap(),
        name: DisplayName::try_from("P").unwrap(),
        id: ClientMsgId::try_from(text).unwrap(),
        user: None,
        at: 1,
        body: Body::Chat { text: ChatText::try_from(text).unwrap() },
    }
}

fn fast() -> SubscriberConfig {
    SubscriberConfig {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(600),
        max_backoff: Duration::from_millis(200),
    }
}

async fn next(events: &mut UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").expect("the subscriber runs")
}

/// Post to `r` until a publication of it arrives (a subscription takes effect a moment after
/// it is asked for); returns its text.
async fn post_until_heard(redis: &RedisServer, events: &mut UnboundedReceiver<Event>, r: &str, text: &str) -> String {
    let log = RoomLog::new(100);
    let mut conn = redis.connection().await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        log.append(&mut conn, &room(r), &message(text), &Epoch::try_from("e1").unwrap()).await.unwrap();
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            match event {
                Event::Publication { room: got, json, .. } if got.as_str() == r => {
                    return serde_json::from_str::<RoomMessage>(&json).unwrap().id.to_string();
                }
                _ => continue,
            }
        }
        assert!(std::time::Instant::now() < deadline, "no publication of {r}");
    }
}

#[tokio::test]
async fn only_the_rooms_listened_to_are_heard() {
    let redis = RedisServer::start();
    let (subscriber, mut events) = Subscriber::start(redis::Client::open(redis.url()).unwrap(), "n1", fast());
    subscriber.subscribe(&room("here"));
    assert_eq!(post_until_heard(&redis, &mut events, "here", "hello").await, "hello");
    // A room not listened to is not heard; one left is not either.
    let log = RoomLog::new(100);
    let mut conn = redis.connection().await;
    log.append(&mut conn, &room("elsewhere"), &message("nope"), &Epoch::try_from("e1").unwrap()).await.unwrap();
    subscriber.unsubscribe(&room("here"));
    subscriber.subscribe(&room("there"));
    assert_eq!(post_until_heard(&redis, &mut events, "there", "there-1").await, "there-1");
    log.append(&mut conn, &room("here"), &message("gone"), &Epoch::try_from("e1").unwrap()).await.unwrap();
    log.append(&mut conn, &room("there"), &message("there-2"), &Epoch::try_from("e1").unwrap()).await.unwrap();
    let Event::Publication { room: r, json, .. } = next(&mut events).await else { panic!("a publication") };
    assert_eq!((r.as_str(), serde_json::from_str::<RoomMessage>(&json).unwrap().id.as_str()), ("there", "there-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_a_restart_or_a_deaf_connection_is_rebuilt_and_reported() {
    let mut redis = RedisServer::start();
    let (subscriber, mut events) = Subscriber::start(redis::Client::open(redis.url()).unwrap(), "n1", fast());
    subscriber.subscribe(&room("r"));
    post_until_heard(&redis, &mut events, "r", "before").await;

    // The pub/sub connection is cut; the command connection stays.
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap();
    assert_eq!(next(&mut events).await, Event::Resync);
    assert_eq!(post_until_heard(&redis, &mut events, "r", "after-cut").await, "after-cut");

    // Redis killed and started again.
    redis.kill();
    redis.restart();
    let resync = loop {
        match next(&mut events).await {
            Event::Resync => break true,
            _ => continue,
        }
    };
    assert!(resync);
    assert_eq!(post_until_heard(&redis, &mut events, "r", "after-restart").await, "after-restart");

    // Deaf: Redis answers nobody for a while (the probe cannot come back in time).
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL").query_async(&mut conn).await.unwrap();
    assert_eq!(next(&mut events).await, Event::Resync);
    assert_eq!(post_until_heard(&redis, &mut events, "r", "after-deaf").await, "after-deaf");
    drop(subscriber);
}
