//! Connection admission: the limits every TCP connection passes before anything reads from
//! it. A connection holds a [`Slot`] for as long as its socket is open (an upgraded WebSocket
//! included), so the counts are of sockets, which is what runs out.

use crate::core::{address_key, Millis, Rate, TokenBucket};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits on open connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections on the server, all kinds together.
    pub max_total: usize,
    /// Open connections from one address (an IPv6 /64 counts as one).
    pub max_per_addr: usize,
    /// New connections from one address.
    pub rate_per_addr: Rate,
}

/// Why a connection was turned away, with its stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server has as many connections open as it may ({0}); try again later")]
    ServerFull(usize),
    #[error("your address has as many connections open as it may ({0})")]
    AddressFull(usize),
    #[error("your address opens connections too fast (at most {0} per minute)")]
    AddressRate(u64),
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::ServerFull(_) => "too_many_connections",
            Refusal::AddressFull(_) => "too_many_connections_from_address",
            Refusal::AddressRate(_) => "connection_rate_limited",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Refusal::ServerFull(_) => 503,
            Refusal::AddressFull(_) | Refusal::AddressRate(_) => 429,
        }
    }
}

#[derive(Debug)]
struct AddrConns {
    open: usize,
    bucket: TokenBucket,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    by_addr: HashMap<IpAddr, AddrConns>,
}

/// Counts open connections, in total and per address.
#[derive(Debug)]
pub struct Admission {
    limits: ConnLimits,
    state: Mutex<State>,
    /// Connections turned away (for `/metrics`).
    refused: std::sync::atomic::AtomicU64,
}

impl Admission {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Admission { limits, state: Mutex::new(State::default()), refused: Default::default() })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Connections turned away so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Admit a connection from `ip`, or say why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Millis) -> Result<Slot, Refusal> {
        let admitted = self.try_admit(ip, now);
        if admitted.is_err() {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        admitted
    }

    fn try_admit(self: &Arc<Self>, ip: IpAddr, now: Millis) -> Result<Slot, Refusal> {
        let key = address_key(ip);
        let limits = self.limits;
        let mut state = self.lock();
        if state.open >= limits.max_total {
            return Err(Refusal::ServerFull(limits.max_total));
        }
        // The table holds addresses with open connections or a recent burst; forget the
        // others now and then, so it stays as small as the set of active addresses.
        if state.by_addr.len() > 2 * state.open + 1024 {
            state.by_addr.retain(|_, a| a.open > 0 || !a.bucket.is_full(limits.rate_per_addr, now));
        }
        let entry = state
            .by_addr
            .entry(key)
            .or_insert_with(|| AddrConns { open: 0, bucket: TokenBucket::full(limits.rate_per_addr, now) });
        if entry.open >= limits.max_per_addr {
            return Err(Refusal::AddressFull(limits.max_per_addr));
        }
        if !entry.bucket.try_take(limits.rate_per_addr, now) {
            return Err(Refusal::AddressRate(limits.rate_per_addr.per_minute));
        }
        entry.open += 1;
        state.open += 1;
        Ok(Slot { admission: self.clone(), key: Some(key) })
    }

    /// Admit a connection from a trusted proxy: many clients share it, so only the
    /// server-wide limit applies (the proxy limits its clients).
    pub fn admit_proxy(self: &Arc<Self>) -> Result<Slot, Refusal> {
        let mut state = self.lock();
        if state.open >= self.limits.max_total {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Refusal::ServerFull(self.limits.max_total));
        }
        state.open += 1;
        Ok(Slot { admission: self.clone(), key: None })
    }
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(entry) = self.key.and_then(|key| state.by_addr.get_mut(&key)) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

/// Raise this process's soft limit on open files to its hard limit, and return the soft
/// limit now in force (None where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// The connection limit that leaves descriptors for everything else (store, blob files,
/// the media socket, refusals): at most 7/8 of the descriptor limit, less 64.
pub fn connections_for_fd_limit(configured: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(limit) => {
            let usable = limit.saturating_sub(limit / 8).saturating_sub(64) as usize;
            configured.min(usable.max(1))
        }
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits { max_total: 5, max_per_addr: 2, rate_per_addr: Rate::per_second(1, 3) }
    }

    #[test]
    fn total_per_address_and_rate_limits_hold_and_slots_come_back() {
        let admission = Admission::new(limits());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admission.admit(a, 0).unwrap();
        let a2 = admission.admit(a, 0).unwrap();
        assert_eq!(admission.admit(a, 0).unwrap_err(), Refusal::AddressFull(2));
        drop(a1);
        // The slot is back, but the address spent its burst of 3.
        let a3 = admission.admit(a, 0).unwrap();
        drop(a3);
        assert_eq!(admission.admit(a, 0).unwrap_err(), Refusal::AddressRate(60));
        assert!(admission.admit(a, 1000).is_ok(), "a token a second");
        let b1 = admission.admit(b, 0).unwrap();
        let c = admission.admit("10.0.0.3".parse().unwrap(), 0).unwrap();
        let d = admission.admit("10.0.0.4".parse().unwrap(), 0).unwrap();
        assert_eq!(admission.open(), 4);
        let e = admission.admit("10.0.0.5".parse().unwrap(), 0).unwrap();
        assert_eq!(admission.admit("10.0.0.6".parse().unwrap(), 0).unwrap_err(), Refusal::ServerFull(5));
        drop((a2, b1, c, d, e));
        assert_eq!(admission.open(), 0);
        assert_eq!(admission.refused(), 3);
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let admission = Admission::new(limits());
        let _x = admission.admit("2001:db8:1:2::1".parse().unwrap(), 0).unwrap();
        let _y = admission.admit("2001:db8:1:2::ffff".parse().unwrap(), 0).unwrap();
        assert_eq!(admission.admit("2001:db8:1:2:abcd::9".parse().unwrap(), 0).unwrap_err(), Refusal::AddressFull(2));
        assert!(admission.admit("2001:db8:1:3::1".parse().unwrap(), 0).is_ok(), "another /64");
    }

    #[test]
    fn the_connection_limit_leaves_descriptors_for_the_rest() {
        assert_eq!(connections_for_fd_limit(20_000, Some(1024)), 832);
        assert_eq!(connections_for_fd_limit(500, Some(1 << 20)), 500);
        assert_eq!(connections_for_fd_limit(500, None), 500);
        assert_eq!(connections_for_fd_limit(500, Some(10)), 1);
    }
}
