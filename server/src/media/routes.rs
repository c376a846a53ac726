//! One UDP socket for every session: which session a datagram belongs to.
//!
//! A session is first known by its ICE username fragment: the peer's STUN checks carry
//! `<our ufrag>:<their ufrag>`. The address such a check comes from is then the session's too,
//! and DTLS, SRTP and SRTCP from that address go to it. Anything else (garbage, a scan, a
//! session that ended) is counted and dropped, without a reply.

use super::Relay;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Addresses one session may be reached from (ICE may try a few candidate pairs).
const MAX_ADDRS_PER_SESSION: usize = 8;
/// Largest datagram read; WebRTC keeps under about 1,200 bytes.
const MAX_DATAGRAM: usize = 2048;

/// A datagram on its way to its session.
#[derive(Debug)]
pub struct Datagram {
    pub at: Instant,
    pub source: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Entry {
    ufrag: String,
    addrs: Vec<SocketAddr>,
    tx: mpsc::Sender<Datagram>,
}

/// The demultiplexing table.
#[derive(Debug, Default)]
pub struct Routes {
    sessions: HashMap<u64, Entry>,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
}

/// The username fragment a STUN binding request is addressed to (ours), if `data` is one.
pub fn stun_target(data: &[u8]) -> Option<String> {
    // STUN: the first two bits are zero, and the magic cookie follows the type and length.
    if data.len() < 20 || data[0] > 1 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let message = str0m::ice::StunMessage::parse(data).ok()?;
    let (ours, _theirs) = message.split_username()?;
    Some(ours.to_owned())
}

impl Routes {
    pub fn add(&mut self, session: u64, ufrag: String, tx: mpsc::Sender<Datagram>) {
        self.by_ufrag.insert(ufrag.clone(), session);
        self.sessions.insert(session, Entry { ufrag, addrs: Vec::new(), tx });
    }

    pub fn remove(&mut self, session: u64) {
        if let Some(entry) = self.sessions.remove(&session) {
            self.by_ufrag.remove(&entry.ufrag);
            for addr in entry.addrs {
                if self.by_addr.get(&addr) == Some(&session) {
                    self.by_addr.remove(&addr);
                }
            }
        }
    }

    /// Where `data` from `source` goes, learning `source` from a STUN check.
    pub fn route(&mut self, data: &[u8], source: SocketAddr) -> Option<mpsc::Sender<Datagram>> {
        if let Some(ufrag) = stun_target(data) {
            let session = *self.by_ufrag.get(&ufrag)?;
            let entry = self.sessions.get_mut(&session)?;
            if !entry.addrs.contains(&source) && entry.addrs.len() < MAX_ADDRS_PER_SESSION {
                entry.addrs.push(source);
                // The address may have belonged to an ended session of the same peer.
                self.by_addr.insert(source, session);
            }
            return Some(entry.tx.clone());
        }
        let session = self.by_addr.get(&source)?;
        self.sessions.get(session).map(|e| e.tx.clone())
    }

    /// Entries of every table: zero when no session is left.
    pub fn len(&self) -> usize {
        self.sessions.len() + self.by_ufrag.len() + self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Read the shared socket until the relay stops, handing each datagram to its session's queue.
pub async fn receive_loop(relay: Arc<Relay>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut stopping = relay.stopping();
    loop {
        let received = tokio::select! {
            received = relay.socket.recv_from(&mut buf) => received,
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let (n, source) = match received {
            Ok(received) => received,
            Err(err) => {
                // ICMP errors from earlier sends surface here on some systems: not fatal.
                tracing::debug!(error = %err, "media socket receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
        };
        relay.counters.datagrams_in.fetch_add(1, Ordering::Relaxed);
        let data = &buf[..n];
        let target = relay.lock_routes().route(data, source);
        let Some(tx) = target else {
            relay.counters.datagrams_unrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let datagram = Datagram { at: Instant::now(), source, data: data.to_vec() };
        if tx.try_send(datagram).is_err() {
            relay.counters.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        // Type 0x0001, then length, cookie, transaction id, one USERNAME attribute.
        let mut attr = Vec::new();
        attr.extend_from_slice(&0x0006u16.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        // PRIORITY and MESSAGE-INTEGRITY, which every binding request carries (the
        // integrity is checked by str0m later, not here).
        attr.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0, 0, 0, 1]);
        attr.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        attr.extend_from_slice(&[0u8; 20]);
        let mut msg = Vec::new();
        msg.extend_from_slice(&0x0001u16.to_be_bytes());
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[7u8; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    #[test]
    fn stun_finds_the_session_then_the_address_does() {
        let mut routes = Routes::default();
        let (tx, _rx) = mpsc::channel(1);
        routes.add(1, "ours".into(), tx);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(routes.route(b"\x80dtls-or-rtp", peer).is_none(), "unknown address before STUN");
        assert!(routes.route(&binding_request("ours:theirs"), peer).is_some());
        assert!(routes.route(b"\x80rtp", peer).is_some(), "the address is learned");
        assert!(routes.route(&binding_request("other:theirs"), peer).is_none());
        routes.remove(1);
        assert!(routes.route(b"\x80rtp", peer).is_none());
        assert!(routes.is_empty(), "nothing left behind");
    }

    #[test]
    fn garbage_routes_nowhere() {
        let mut routes = Routes::default();
        let (tx, _rx) = mpsc::channel(1);
        routes.add(1, "ours".into(), tx);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for junk in [&b""[..], b"\x00", &[0u8; 20], &[0xffu8; 1500], &binding_request("ours")[..24]] {
            assert!(routes.route(junk, peer).is_none(), "{junk:?}");
        }
        assert_eq!(routes.len(), 2);
    }
}
