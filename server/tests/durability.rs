//! The real `relaycast` binary on a real store: acked messages survive `kill -9`, and a
//! SIGTERM shuts it down cleanly.

mod common;

use common::*;
use relaycast_shared::*;
use std::process::Command;

#[tokio::test]
async fn acked_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut bin = spawn_binary(dir.path());
    let mut a = Client::connect(&bin.server).await;
    let epoch = epoch_of(&a.join("r", "a", None).await);
    // Pipelined: many commits in flight when the process dies.
    for i in 1..=300 {
        a.publish("r", &format!("k{i}"), &format!("durable {i}")).await;
    }
    let mut acked = 0;
    while acked < 300 {
        if let ServerMsg::Ack { seq, .. } = a.recv().await {
            acked = seq;
        }
    }
    // More in flight, not waited for: whatever was acked must survive, nothing else matters.
    for i in 301..=400 {
        a.publish("r", &format!("k{i}"), "maybe").await;
    }
    let mut more_acked = acked;
    while let Ok(msg) = tokio::time::timeout(std::time::Duration::from_millis(5), a.recv()).await {
        if let ServerMsg::Ack { seq, .. } = msg {
            more_acked = seq;
        }
    }
    bin.child.kill().unwrap(); // SIGKILL
    bin.child.wait().unwrap();

    let mut bin = spawn_binary(dir.path());
    let mut b = Client::connect(&bin.server).await;
    let got = b.join("r", "b", Some(ResumeFrom { epoch: epoch.clone(), last_seq: 0 })).await;
    assert!(!got.iter().any(|m| matches!(m, ServerMsg::HistoryReset { .. })), "same epoch after a crash");
    let seqs = seqs(&got);
    assert!(seqs.len() as u64 >= more_acked, "every acked message survived: {} < {more_acked}", seqs.len());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    // And the sequence continues after the last durable message.
    let next = b.publish_acked("r", "after", "after restart").await;
    assert_eq!(next, seqs.len() as u64 + 1);
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
}

/// Enough history that the journal fills a file and folds it into redb before the crash:
/// what was folded and what was only journaled both come back.
#[tokio::test]
async fn acked_messages_survive_kill_9_across_a_journal_fold() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--log", "warn", "--history-max-messages", "5000", "--history-max-bytes", "67108864"];
    let mut bin = spawn_binary_with(dir.path(), &flags, None);
    let mut a = Client::connect(&bin.server).await;
    let epoch = epoch_of(&a.join("r", "a", None).await);
    let text = "j".repeat(4000);
    let total = (relaycast::store::FOLD_AT_BYTES / 4000 + 300) as usize;
    let mut acked = 0;
    for chunk in (1..=total).collect::<Vec<_>>().chunks(100) {
        for i in chunk {
            a.publish("r", &format!("k{i}"), &text).await;
        }
        while acked < *chunk.last().unwrap() as u64 {
            if let ServerMsg::Ack { seq, .. } = a.recv().await {
                acked = seq;
            }
        }
    }
    let folded = std::fs::metadata(dir.path().join("history.redb")).unwrap().len();
    assert!(folded > relaycast::store::FOLD_AT_BYTES / 2, "a journal file was folded into redb ({folded} bytes)");
    bin.child.kill().unwrap(); // SIGKILL
    bin.child.wait().unwrap();

    let mut bin = spawn_binary_with(dir.path(), &flags, None);
    let mut b = Client::connect(&bin.server).await;
    let got = b.join("r", "b", Some(ResumeFrom { epoch, last_seq: 0 })).await;
    assert_eq!(seqs(&got), (1..=acked).collect::<Vec<_>>(), "every acked message, in order, once");
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_closes_clients_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut bin = spawn_binary(dir.path());
    let mut a = Client::connect(&bin.server).await;
    a.join("r", "a", None).await;
    a.publish_acked("r", "t1", "before stop").await;
    let pid = bin.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    assert_eq!(recv_close(&mut a.ws).await, (1001, "shutting_down".into()));
    let exit = bin.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let mut bin = spawn_binary(dir.path());
    let mut b = Client::connect(&bin.server).await;
    assert_eq!(seqs(&b.join("r", "b", None).await), vec![1]);
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
}
