//! The engine alone: many small rooms' messages through Relaycast's IO-free core, without
//! sockets, tasks or a store, on one thread. Each message is decoded from its JSON text,
//! handled (checked, numbered, encoded once, staged), made durable in groups as the store
//! writer would report it, and its outputs (the other member's frame, the sender's ack) are
//! taken. What this leaves out (sockets, the store's IO) is what a bare relay pays too, so
//! this CPU time is what Relaycast adds per message; it is steady enough on a shared machine
//! to show a change of a few percent that the socket benchmarks cannot.
//!
//! The reference, measured in the same run: the least an in-process relay does per message
//! (find the sender's room, copy the frame once, hand each other member a reference to it,
//! ack the sender), which is the bare relay's work without its sockets.

use bytes::Bytes;
use relaycast::core::{ConnId, Engine, EngineConfig, Input, Output};
use relaycast_shared::codec::decode_client;
use relaycast_shared::ClientMsg;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// Rooms of two.
    #[arg(long, default_value_t = 500)]
    pairs: u64,
    /// Round trips per pair (each a message from one member and the answer from the other).
    #[arg(long, default_value_t = 200)]
    rounds: u64,
    /// Alternations of Relaycast's engine and the reference.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

/// A chat message of 128 characters from `conn`, as a client sends it.
fn publish_frame(room: u64, conn: ConnId, n: u64) -> String {
    let text = "x".repeat(128);
    format!(r#"{{"type":"publish","room":"pair-{room}","id":"m-{conn}-{n}","body":{{"kind":"chat","text":"{text}"}}}}"#)
}

/// The frames in the order they are sent, made before the clock starts: per round, first
/// every pair's first member speaks, then every second member answers. Each half round is
/// one group of messages for the store, as when many rooms are busy at once.
type HalfRound = Vec<(ConnId, String)>;

fn half_rounds(a: &EngineArgs) -> Vec<HalfRound> {
    (0..a.rounds)
        .flat_map(|n| (0..2).map(move |side| (n, side)))
        .map(|(n, side)| (0..a.pairs).map(|p| (2 * p + side, publish_frame(p, 2 * p + side, n))).collect())
        .collect()
}

/// Connections `2p` and `2p + 1` joined to room `pair-p`, each from its own address (so no
/// per-address limit applies), with the per-connection message rate opened as the socket
/// benchmarks open it.
fn joined_engine(a: &EngineArgs) -> anyhow::Result<Engine> {
    let config = EngineConfig { messages_per_second: 0, max_unpersisted: usize::MAX, ..EngineConfig::default() };
    let mut engine = Engine::new(config, 1);
    let now = 1_000_000;
    for conn in 0..2 * a.pairs {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + conn as u32));
        engine.handle(now, Input::Connected(conn, addr));
        engine.handle(now, Input::Message(conn, ClientMsg::hello()));
        let join = format!(r#"{{"type":"join","room":"pair-{}","name":"user {conn}"}}"#, conn / 2);
        engine.handle(now, Input::Message(conn, decode_client(&join, 64 * 1024)?));
    }
    while let Some((batch, _)) = engine.take_store_batch() {
        engine.handle(now, Input::Persisted(batch));
    }
    engine.drain_outputs().for_each(drop);
    Ok(engine)
}

/// Seconds for every round through the engine; counts the frames out to check the work done.
fn run_engine(a: &EngineArgs, half_rounds: &[HalfRound]) -> anyhow::Result<(f64, u64)> {
    let mut engine = joined_engine(a)?;
    let mut delivered = 0u64;
    let start = Instant::now();
    // A millisecond per half round on the engine's clock.
    for (now, half) in (2_000_000..).zip(half_rounds) {
        for (conn, frame) in half {
            engine.handle(now, Input::Message(*conn, decode_client(frame, 64 * 1024)?));
        }
        // One group commit for the half round's messages, as the store writer makes them.
        while let Some((batch, ops)) = engine.take_store_batch() {
            drop(ops);
            engine.handle(now, Input::Persisted(batch));
        }
        for out in engine.drain_outputs() {
            if let Output::Deliver { to, frame } = out {
                delivered += to.as_slice().len() as u64 * u64::from(!frame.bytes().is_empty());
            }
        }
    }
    Ok((start.elapsed().as_secs_f64(), delivered))
}

/// The reference: a room per connection pair, a frame copied once and shared with the other
/// member, a one-byte ack to the sender.
fn run_reference(a: &EngineArgs, half_rounds: &[HalfRound]) -> (f64, u64) {
    let room_of: HashMap<ConnId, u64> = (0..2 * a.pairs).map(|c| (c, c / 2)).collect();
    let members: HashMap<u64, Vec<ConnId>> = (0..a.pairs).map(|p| (p, vec![2 * p, 2 * p + 1])).collect();
    let ack = Bytes::from_static(b"a");
    let mut out: Vec<(ConnId, Bytes)> = Vec::new();
    let mut delivered = 0u64;
    let start = Instant::now();
    for half in half_rounds {
        for (conn, frame) in half {
            let Some(room) = room_of.get(conn) else { continue };
            let shared = Bytes::copy_from_slice(frame.as_bytes());
            for &other in members.get(room).into_iter().flatten().filter(|&m| m != conn) {
                out.push((other, shared.clone()));
            }
            out.push((*conn, ack.clone()));
        }
        delivered += out.drain(..).filter(|(_, f)| !f.is_empty()).count() as u64;
    }
    (start.elapsed().as_secs_f64(), delivered)
}

pub fn run(a: EngineArgs) -> anyhow::Result<()> {
    let frames = half_rounds(&a);
    let messages = 2 * a.pairs * a.rounds;
    let mut engine_ns = Vec::new();
    let mut reference_ns = Vec::new();
    for _ in 0..a.repeats {
        let (seconds, delivered) = run_engine(&a, &frames)?;
        // Each message: the other member's frame and the sender's ack.
        anyhow::ensure!(delivered == 2 * messages, "the engine delivered {delivered} frames, not {}", 2 * messages);
        engine_ns.push(seconds * 1e9 / messages as f64);
        let (seconds, delivered) = run_reference(&a, &frames);
        anyhow::ensure!(delivered == 2 * messages, "the reference delivered {delivered} frames");
        reference_ns.push(seconds * 1e9 / messages as f64);
        for (target, ns) in [("relaycast-engine", engine_ns.last()), ("reference", reference_ns.last())] {
            println!(
                "{}",
                serde_json::json!({"scenario": "engine_pairs", "target": target, "pairs": a.pairs, "messages": messages,
                                   "ns_per_message": ns.map(|ns| ns.round())})
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (engine, reference) = (median(&mut engine_ns), median(&mut reference_ns));
    println!(
        "{}",
        serde_json::json!({"scenario": "engine_pairs_ratio", "engine_ns_per_message": engine.round(),
                           "reference_ns_per_message": reference.round(),
                           "engine_x_reference": (engine / reference * 100.0).round() / 100.0})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message through the engine comes out as the other member's frame and the
    /// sender's ack, so the time measured is for work actually done.
    #[test]
    fn every_message_is_delivered_and_acked() {
        let a = EngineArgs { pairs: 3, rounds: 4, repeats: 1 };
        let half_rounds = half_rounds(&a);
        assert_eq!(half_rounds.len(), 8);
        let (_, delivered) = run_engine(&a, &half_rounds).unwrap();
        assert_eq!(delivered, 2 * 2 * 3 * 4);
        let (_, delivered) = run_reference(&a, &half_rounds);
        assert_eq!(delivered, 2 * 2 * 3 * 4);
    }
}
