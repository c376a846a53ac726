//! The durable store's fold: a journal file's worth of messages from many small rooms, written
//! into redb in one transaction, as the journal's folding thread does. Many small rooms write
//! their messages interleaved; the same messages already in key order are the reference, so
//! the ratio shows what arrival order costs the B-tree (the store sorts each run of message
//! writes by key before inserting it).

use relaycast::core::StoreOp;
use relaycast::store::{RedbStore, Store};
use relaycast_shared::RoomName;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct FoldArgs {
    /// Rooms the messages are spread over, interleaved (one message from each in turn).
    #[arg(long, default_value_t = 500)]
    rooms: u64,
    /// Messages from each room in one fold.
    #[arg(long, default_value_t = 40)]
    per_room: u64,
    /// Folds in a row into one store (each one transaction; later ones land in a fuller tree).
    #[arg(long, default_value_t = 5)]
    folds: u64,
    /// Alternations of the two orders.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// About the size of a chat message of 128 characters as the store keeps it.
fn message_json(seq: u64) -> Arc<str> {
    let text = "x".repeat(128);
    format!(
        r#"{{"seq":{seq},"from":"p-0123456789abcdef","name":"someone","id":"m-{seq}","at":1765000000000,"body":{{"type":"chat","text":"{text}"}}}}"#
    )
    .into()
}

/// Seconds to fold `a.folds` batches into a fresh store, in arrival order or in key order.
fn fold_once(a: &FoldArgs, key_order: bool) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("relaycast-fold-{}-{key_order}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = RedbStore::open(&dir)?;
    let rooms: Vec<RoomName> =
        (0..a.rooms).map(|i| RoomName::try_from(format!("pair-{i}").as_str())).collect::<Result<_, _>>()?;
    let json = message_json(1);
    let mut seconds = 0.0;
    for fold in 0..a.folds {
        let seqs = fold * a.per_room + 1..=(fold + 1) * a.per_room;
        let mut ops: Vec<StoreOp> = seqs
            .flat_map(|seq| rooms.iter().map(move |room| (room, seq)))
            .map(|(room, seq)| StoreOp::Append { room: room.clone(), seq, json: json.clone() })
            .collect();
        if key_order {
            ops.sort_by(|x, y| match (x, y) {
                (StoreOp::Append { room: r1, seq: s1, .. }, StoreOp::Append { room: r2, seq: s2, .. }) => {
                    (r1.as_str(), s1).cmp(&(r2.as_str(), s2))
                }
                _ => std::cmp::Ordering::Equal,
            });
        }
        let start = Instant::now();
        store.apply(&ops)?;
        seconds += start.elapsed().as_secs_f64();
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(seconds)
}

pub fn fold(a: FoldArgs) -> anyhow::Result<()> {
    let messages = a.rooms * a.per_room * a.folds;
    let mut us = [Vec::new(), Vec::new()];
    for _ in 0..a.rounds {
        for (i, key_order) in [false, true].into_iter().enumerate() {
            let per_message = fold_once(&a, key_order)? * 1e6 / messages as f64;
            us[i].push(per_message);
            let order = if key_order { "key" } else { "arrival" };
            println!(
                "{}",
                serde_json::json!({"scenario": "store_fold", "order": order, "rooms": a.rooms, "messages": messages,
                                   "us_per_message": (per_message * 100.0).round() / 100.0})
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (arrival, key) = (median(&mut us[0]), median(&mut us[1]));
    println!(
        "{}",
        serde_json::json!({"scenario": "store_fold_ratio", "arrival_us_per_message": (arrival * 100.0).round() / 100.0,
                           "key_order_us_per_message": (key * 100.0).round() / 100.0,
                           "arrival_x_key_order": (arrival / key * 1000.0).round() / 1000.0})
    );
    Ok(())
}
