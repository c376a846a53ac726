//! The room log in a real Redis (Debian's redis-server, AOF fsynced on every write): gapless
//! sequence numbers under concurrent appenders, one epoch until Redis loses the room, history
//! reads, publication to every node, and nothing acked lost across a `kill -9` of Redis.

mod common;

use common::*;
use futures_util::StreamExt;
use relaycast::cluster::room_log::{parse_publication, NewMessage, RoomKeys, RoomLog};
use relaycast_shared::*;

fn message(from: &str, text: &str) -> RoomMessage {
    RoomMessage {
        seq: 0,
        from: PeerId::try_from(from).unwrap(),
        name: DisplayName::try_from(from).unwrap(),
        id: ClientMsgId::try_from(text).unwrap(),
        user: None,
        at: 1_795_000_000_000,
        body: Body::Chat { text: ChatText::try_from(text).unwrap() },
    }
}

fn epoch(s: &str) -> Epoch {
    Epoch::try_from(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_gapless_numbers_and_one_history() {
    let redis = RedisServer::start();
    let log = RoomLog::new(10_000);
    let r = room("standup");
    // Two "nodes", each its own connection, appending at once.
    let mut tasks = Vec::new();
    for node in ["a", "b"] {
        let (log, r, mut conn) = (log.clone(), r.clone(), redis.connection().await);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..300 {
                let appended =
                    log.append(&mut conn, &r, &message(node, &format!("{node}-{i}")), &epoch(node)).await.unwrap();
                seqs.push((appended.epoch, appended.seq));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let epochs: std::collections::HashSet<_> = all.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(epochs.len(), 1, "one epoch, whichever node came first");
    let mut seqs: Vec<u64> = all.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=600).collect::<Vec<_>>(), "every number once, no gap");

    // The history holds them in order, each numbered as its stream id says.
    let mut conn = redis.connection().await;
    let read = log.read(&mut conn, &r, 1, 1000, &epoch("unused")).await.unwrap();
    assert_eq!((read.top, read.messages.len()), (600, 600));
    for (i, json) in read.messages.iter().enumerate() {
        let m: RoomMessage = serde_json::from_str(json).unwrap();
        assert_eq!(m.seq, i as u64 + 1);
    }
    let page = log.read(&mut conn, &r, 598, 10, &epoch("unused")).await.unwrap();
    assert_eq!(page.messages.len(), 3);
    // A room Redis does not know gets the epoch offered, and is empty.
    let nowhere = log.read(&mut conn, &room("nowhere"), 1, 10, &epoch("fresh")).await.unwrap();
    assert_eq!((nowhere.epoch.as_str(), nowhere.top, nowhere.messages.len()), ("fresh", 0, 0));
    let first = log.append(&mut conn, &room("nowhere"), &message("a", "hi"), &epoch("other")).await.unwrap();
    assert_eq!((first.epoch.as_str(), first.seq), ("fresh", 1), "the read's epoch holds");
}

#[tokio::test]
async fn the_log_is_trimmed_and_publishes_each_message_with_its_epoch() {
    let redis = RedisServer::start();
    let log = RoomLog::new(5);
    let r = room("busy");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(RoomKeys::of(&r).channel).await.unwrap();
    let mut conn = redis.connection().await;
    for i in 1..=8 {
        log.append(&mut conn, &r, &message("a", &format!("m{i}")), &epoch("e1")).await.unwrap();
    }
    let mut publications = pubsub.on_message();
    for i in 1..=8u64 {
        let payload: String = publications.next().await.unwrap().get_payload().unwrap();
        let (e, json) = parse_publication(&payload).unwrap();
        let m: RoomMessage = serde_json::from_str(json).unwrap();
        assert_eq!((e.as_str(), m.seq), ("e1", i), "in order, each once");
    }
    // Only the newest five are kept: a read from 1 starts at the oldest kept.
    let read = log.read(&mut conn, &r, 1, 100, &epoch("unused")).await.unwrap();
    let seqs: Vec<u64> = read.messages.iter().map(|j| serde_json::from_str::<RoomMessage>(j).unwrap().seq).collect();
    assert_eq!((read.top, seqs), (8, vec![4, 5, 6, 7, 8]));
}

#[tokio::test]
async fn a_killed_redis_keeps_what_it_acked_and_a_flushed_one_starts_a_new_epoch() {
    let mut redis = RedisServer::start();
    let log = RoomLog::new(1000);
    let r = room("durable");
    {
        let mut conn = redis.connection().await;
        for i in 1..=20 {
            assert_eq!(log.append(&mut conn, &r, &message("a", &format!("m{i}")), &epoch("e1")).await.unwrap().seq, i);
        }
    }
    // kill -9 right after the acks: the AOF (fsync always) has every one of them.
    redis.kill();
    redis.restart();
    let mut conn = redis.connection().await;
    let read = log.read(&mut conn, &r, 1, 100, &epoch("unused")).await.unwrap();
    assert_eq!((read.epoch.as_str(), read.top, read.messages.len()), ("e1", 20, 20));
    let next = log.append(&mut conn, &r, &message("a", "after"), &epoch("e2")).await.unwrap();
    assert_eq!((next.epoch.as_str(), next.seq), ("e1", 21), "the same history goes on");

    // Redis loses the room (a flush stands for a restart without persistence, an eviction):
    // the next append makes a new epoch and starts at 1; the old stream does not mix in.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let fresh = log.append(&mut conn, &r, &message("a", "fresh"), &epoch("e2")).await.unwrap();
    assert_eq!((fresh.epoch.as_str(), fresh.seq), ("e2", 1));
    let read = log.read(&mut conn, &r, 1, 10, &epoch("e3")).await.unwrap();
    assert_eq!((read.epoch.as_str(), read.messages.len()), ("e2", 1));
    // A pipeline of appends: numbered in the order sent, one answer each.
    let (m1, m2, e) = (message("a", "p1"), message("b", "p2"), epoch("e9"));
    let batch =
        [NewMessage { room: &r, message: &m1, new_epoch: &e }, NewMessage { room: &r, message: &m2, new_epoch: &e }];
    // After a restart Redis has forgotten the script: the first try says so, the reload works.
    redis.kill();
    redis.restart();
    let mut conn = redis.connection().await;
    let answers = log.append_all(&mut conn, &batch, false).await.unwrap();
    assert!(answers.iter().all(|a| a.as_ref().is_err_and(|e| e.is_no_script())), "{answers:?}");
    let answers = log.append_all(&mut conn, &batch, true).await.unwrap();
    let seqs: Vec<u64> = answers.into_iter().map(|a| a.unwrap().seq).collect();
    assert_eq!(seqs, [2, 3]);
}
