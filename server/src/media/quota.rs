//! Media sessions per client address and per room member. A session holds its place from
//! the moment its offer is answered, connected or not (a session that never connects ends at
//! the connect timeout), so one client cannot take the server's session limit for everyone.

use relaycast_shared::{PeerId, RoomName};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Whose sessions are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A client address key (`core::address_key`).
    Addr(IpAddr),
    /// A member of a room, by the peer id its grant or stream key was minted for.
    Member(RoomName, PeerId),
}

/// Open sessions per owner.
#[derive(Debug, Default)]
pub struct Quotas {
    open: Mutex<HashMap<Owner, usize>>,
}

impl Quotas {
    /// Take a place for each `(owner, limit)`, all or none; on refusal, the owner at its limit.
    pub fn take(self: &Arc<Self>, wanted: Vec<(Owner, usize)>) -> Result<Places, (Owner, usize)> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((owner, limit)) =
            wanted.iter().find(|(owner, limit)| open.get(owner).copied().unwrap_or(0) >= *limit)
        {
            return Err((owner.clone(), *limit));
        }
        let owners: Vec<Owner> = wanted.into_iter().map(|(owner, _)| owner).collect();
        for owner in &owners {
            *open.entry(owner.clone()).or_default() += 1;
        }
        Ok(Places { quotas: self.clone(), owners })
    }

    /// Owners with at least one session (zero when every session has ended).
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's places; given back when dropped.
#[derive(Debug)]
pub struct Places {
    quotas: Arc<Quotas>,
    owners: Vec<Owner>,
}

impl Drop for Places {
    fn drop(&mut self) {
        let mut open = self.quotas.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for owner in &self.owners {
            if let Some(n) = open.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    open.remove(owner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_all_or_none_and_given_back() {
        let quotas = Arc::new(Quotas::default());
        let addr = Owner::Addr("10.0.0.1".parse().unwrap());
        let member = Owner::Member(RoomName::try_from("r").unwrap(), PeerId::try_from("p").unwrap());
        let a = quotas.take(vec![(addr.clone(), 2), (member.clone(), 1)]).unwrap();
        let refused = quotas.take(vec![(addr.clone(), 2), (member.clone(), 1)]).unwrap_err();
        assert_eq!(refused, (member.clone(), 1));
        let b = quotas.take(vec![(addr.clone(), 2)]).unwrap();
        assert_eq!(quotas.take(vec![(addr.clone(), 2)]).unwrap_err().0, addr);
        drop((a, b));
        assert!(quotas.is_empty());
        assert!(quotas.take(vec![(addr, 2), (member, 1)]).is_ok());
    }
}
