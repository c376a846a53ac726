//! A stalled reader: dropped with a reason, without slowing or costing the others, and able
//! to come back with recovery. Its own test binary, so the memory it measures is its own.

mod common;

use common::*;
use futures_util::StreamExt as _;
use relaycast_shared::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn stalled_client_is_dropped_and_others_get_everything() {
    let server = start(test_config(|c| {
        c.queue_bytes = 2 * 1024 * 1024;
        c.history_max_messages = 100;
    }))
    .await;
    let mut publisher = Client::connect(&server).await;
    publisher.join("r", "pub", None).await;
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut c = Client::connect(&server).await;
        c.join("r", &format!("reader{i}"), None).await;
        readers.push(c);
    }
    let mut stalled = Vec::new();
    let mut epoch = None;
    for i in 0..2 {
        let mut c = Client::connect(&server).await;
        epoch = Some(epoch_of(&c.join("r", &format!("stalled{i}"), None).await));
        stalled.push(c); // never read again
    }
    let epoch = epoch.unwrap();
    const N: usize = 1500;
    let big = "x".repeat(8000);
    let readers = readers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                while seqs.len() < N {
                    if let ServerMsg::Message { message, .. } = c.recv().await {
                        seqs.push(message.seq);
                    }
                }
                seqs
            })
        })
        .collect::<Vec<_>>();
    let rss_before = rss_kib();
    for i in 0..N {
        publisher.publish("r", &format!("b{i}"), &big).await;
    }
    let acks = publisher.recv_until(|m| matches!(m, ServerMsg::Ack { seq, .. } if *seq == N as u64)).await;
    assert_eq!(acks.iter().filter(|m| matches!(m, ServerMsg::Ack { .. })).count(), N);
    for r in readers {
        assert_eq!(r.await.unwrap(), (1..=N as u64).collect::<Vec<_>>(), "a reading client lost nothing");
    }
    assert_eq!(server.metric("relaycast_dropped_slow_clients_total").await, 2);
    // 1500 x 8 KB = 12 MB per stalled client had its queue been unbounded; bounded, the
    // server holds at most a queue and a write buffer for each.
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 16, "memory grew by {grown_mib} MiB");
    for mut s in stalled {
        // Reading at last, it finds what the sockets held of its backlog, then the end.
        let mut last_seen = 0;
        let (code, reason) = loop {
            let frame = tokio::time::timeout(WAIT, s.ws.next()).await.unwrap();
            match frame {
                Some(Ok(Message::Text(t))) => {
                    if let ServerMsg::Message { message, .. } = decode_server(&t).unwrap() {
                        last_seen = message.seq;
                    }
                }
                Some(Ok(Message::Close(Some(f)))) => break (u16::from(f.code), f.reason.to_string()),
                Some(Ok(_)) => {}
                other => break (1006, format!("{other:?}")),
            }
        };
        // The server ended it: with the reason when the close frame still fit in what the
        // socket would take, else by closing the socket (a peer that reads nothing is not
        // waited for, so its socket and queue are freed at once).
        assert!(matches!((code, reason.as_str()), (1008, "slow_consumer") | (1006, _)), "{code} {reason}");
        assert!((last_seen as usize) < N, "it was cut off before the end");
        // It comes back and resumes: told what was evicted, then given the rest.
        let mut back = Client::connect(&server).await;
        let resume = ResumeFrom { epoch: epoch.clone(), last_seq: last_seen };
        let got = back.join("r", "back", Some(resume)).await;
        let oldest = N as u64 - 99; // the history holds the last 100
        let truncated = |m: &ServerMsg| matches!(m, ServerMsg::HistoryTruncated { oldest_available, .. } if *oldest_available == oldest);
        assert!(got.iter().any(truncated), "{got:?}");
        assert_eq!(seqs(&got), (oldest..=N as u64).collect::<Vec<_>>());
    }
    server.stop().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
