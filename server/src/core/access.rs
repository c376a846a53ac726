//! The access side of the engine: who a connection is (its token, in token mode), what it may
//! do in each room (rights), what happens as its token expires and is refreshed, and removals
//! (by a moderator, the app, or a narrower token) that hold against older tokens, also across
//! restarts. The engine's message flow is in `mod.rs`; this is who may take part in it.

use super::*;

/// A removal that holds: tokens issued before `at` are refused for the room (or server) until
/// `until`, the expiry of the newest token the user had then (older ones expire sooner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bar {
    pub(super) at: Millis,
    pub(super) until: Millis,
}

/// A removal as the store keeps it, so that it holds across a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Removal {
    /// The room, or none: the whole server.
    pub room: Option<RoomName>,
    pub user: UserId,
    pub at: Millis,
    pub until: Millis,
}

impl Bar {
    /// Whether this removal keeps out `identity`: yes unless its token was issued since.
    pub(super) fn holds_for(&self, identity: &Identity) -> bool {
        identity.issued.is_none_or(|issued| issued <= self.at)
    }
}

impl Engine {
    /// Removals from the store that still hold at `now` (before any connection).
    pub fn restore_removals(&mut self, removals: Vec<Removal>, now: Millis) {
        for r in removals.into_iter().filter(|r| r.until > now) {
            self.bars.insert((r.room, r.user), Bar { at: r.at, until: r.until });
        }
    }

    /// Token mode: verify `token` and make it the connection's identity. A connection keeps
    /// its user; a user removed from the server needs a token issued since. Rights in the
    /// rooms the connection is in follow the new token. Open mode reads no tokens.
    pub(super) fn take_token(
        &mut self,
        conn: ConnId,
        token: &AccessToken,
        now: Millis,
    ) -> Result<(), (ErrorCode, String)> {
        let Auth::Token(auth) = &self.config.auth else {
            return Ok(());
        };
        let identity =
            auth.verifier.verify(token.as_str(), now).map_err(|AuthError { code, message }| (code, message))?;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        if peer.identity.as_ref().is_some_and(|current| current.user != identity.user) {
            return Err((ErrorCode::Forbidden, "this token is for another user than the connection's".into()));
        }
        if self.bars.get(&(None, identity.user.clone())).is_some_and(|bar| bar.holds_for(&identity)) {
            return Err((ErrorCode::Removed, "you were removed from this server".into()));
        }
        peer.identity = Some(identity);
        peer.expiry_noticed = false;
        self.apply_token_rights(conn, now);
        Ok(())
    }

    pub(super) fn refresh(&mut self, conn: ConnId, token: AccessToken, now: Millis) {
        if let Auth::Open = self.config.auth {
            let message = "this server runs in open mode: there is no token to refresh".into();
            return self.error(conn, ErrorCode::Unauthorized, message, None, None);
        }
        match self.take_token(conn, &token, now) {
            Ok(()) => {
                let expires = self.peers.get(&conn).and_then(|p| p.identity.as_ref()).map_or(0, |i| i.expires);
                self.send(conn, &ServerMsg::TokenAccepted { expires });
            }
            // The old token stays in force until it expires.
            Err((code, message)) => self.error(conn, code, message, None, None),
        }
    }

    /// The connection's token changed: its rights in each of its rooms follow. A room the
    /// new token does not let it stay in, it leaves (told why); a gained right to go live or
    /// record brings a stream key.
    pub(super) fn apply_token_rights(&mut self, conn: ConnId, now: Millis) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let Some(identity) = &peer.identity else {
            return;
        };
        let mut lost = Vec::new();
        let mut changed = Vec::new();
        for m in &mut peer.rooms {
            let rights = identity.rooms.for_room(&m.room);
            if rights == m.rights {
                continue;
            }
            if !rights.has(Right::Join) {
                lost.push(m.room.clone());
                continue;
            }
            let had_stream = m.rights.has(Right::Broadcast) || m.rights.has(Right::Record);
            m.rights = rights;
            changed.push((m.room.clone(), rights, !had_stream));
        }
        for room in lost {
            let reason = Reason::try_from("your new token does not let you stay in this room").ok();
            self.expel(conn, &room, ErrorCode::Forbidden, reason);
        }
        for (room, rights, had_no_stream) in changed {
            self.send(conn, &ServerMsg::Rights { room: room.clone(), rights });
            if had_no_stream {
                self.send_stream_key(conn, &room, rights, now);
            }
        }
    }

    /// A stream key for a member whose rights let it go live or record.
    pub(super) fn send_stream_key(&mut self, conn: ConnId, room: &RoomName, rights: Rights, now: Millis) {
        let (Some(grant), Some(peer)) = (&self.config.grant, self.peers.get(&conn)) else {
            return;
        };
        if rights.has(Right::Broadcast) || rights.has(Right::Record) {
            let (key, _) = grant.mint_for(Purpose::Stream, room, &peer.id, now);
            self.send(conn, &ServerMsg::StreamKey { room: room.clone(), key });
        }
    }

    /// The message `seq` of a room, from the history this node holds.
    fn message_at(&self, room_name: &RoomName, seq: u64) -> Option<RoomMessage> {
        let entry = self.rooms.get(room_name).and_then(|r| r.history.get(seq))?;
        serde_json::from_str::<RoomMessage>(&entry.json).ok()
    }

    /// The connection's author of `message`: the same user in token mode; in open mode the
    /// same connection, or the same browser (its lasting key's ref starts the message's id,
    /// which only that browser may post).
    fn is_author(&self, conn: ConnId, message: &RoomMessage) -> bool {
        self.peers.get(&conn).is_some_and(|peer| match &peer.identity {
            Some(identity) => message.user.as_ref() == Some(&identity.user),
            None => {
                let same_browser = peer
                    .client_ref
                    .as_deref()
                    .is_some_and(|r| message.id.as_str().split_once('.').is_some_and(|(prefix, _)| prefix == r));
                message.from == peer.id || same_browser
            }
        })
    }

    /// An edit of message `of` may be posted: it is a chat message still in the history,
    /// and this connection wrote it (a moderator deletes others' messages, it does not
    /// rewrite them).
    pub(super) fn check_edit(&self, conn: ConnId, room_name: &RoomName, of: u64) -> Result<(), (ErrorCode, String)> {
        let Some(message) = self.message_at(room_name, of) else {
            return Err((ErrorCode::UnknownMessage, format!("no message {of} in this room's history")));
        };
        if !matches!(message.body, Body::Chat { .. }) {
            return Err((ErrorCode::InvalidField, format!("message {of} is not a chat message that can be edited")));
        }
        if !self.is_author(conn, &message) {
            return Err((ErrorCode::Forbidden, "you may edit only your own messages".into()));
        }
        Ok(())
    }

    /// Delete message `seq`: its author may (the same user in token mode, the same connection
    /// in open mode), and so may a moderator. What stays in the history is a tombstone (who,
    /// when; [`Body::Deleted`]); the room is told at once and the store with the next batch,
    /// and a [`Body::Deletion`] after it records the deletion for clients that resume later.
    pub(super) fn delete_message(&mut self, conn: ConnId, room_name: RoomName, seq: u64, now: Millis) {
        let Some(rights) = self.rights(conn, &room_name) else {
            return self.not_joined(conn, room_name, None);
        };
        let Some(message) = self.message_at(&room_name, seq) else {
            let text = format!("no message {seq} in this room's history");
            return self.error(conn, ErrorCode::UnknownMessage, text, Some(room_name), None);
        };
        if !self.is_author(conn, &message) && !rights.has(Right::Moderate) {
            return self.forbidden(conn, room_name, None, "you may delete only your own messages here");
        }
        if matches!(message.body, Body::Deletion { .. }) {
            let text = format!("message {seq} records a deletion: it cannot be deleted");
            return self.error(conn, ErrorCode::InvalidField, text, Some(room_name), None);
        }
        if message.body == Body::Deleted {
            // Deleted already (a retry): say so again, record nothing more.
            return self.send(conn, &ServerMsg::Deleted { room: room_name, seq });
        }
        if self.unpersisted >= self.config.max_unpersisted {
            let text = "storage is behind; retry later".into();
            return self.error(conn, ErrorCode::Overloaded, text, Some(room_name), None);
        }
        // The edits of a message go with it: no earlier text stays behind.
        let edits: Vec<u64> = match self.rooms.get(&room_name) {
            Some(room) if matches!(message.body, Body::Chat { .. }) => room
                .history
                .after(seq)
                .filter_map(|e| serde_json::from_str::<RoomMessage>(&e.json).ok())
                .filter(|m| m.body.target() == Some(seq))
                .map(|m| m.seq)
                .collect(),
            _ => Vec::new(),
        };
        for edit in edits {
            self.tombstone(&room_name, edit);
        }
        self.tombstone(&room_name, seq);
        let Some(author) = self.author(conn, &room_name) else {
            return;
        };
        let id = self.new_message_id();
        self.stage_message(room_name, author, id, Body::Deletion { of: seq }, Origin::Server, now);
    }

    /// Message `seq` becomes [`Body::Deleted`] in the history (here or, in cluster mode, in
    /// the shared log, which tells every node), and the room is told.
    fn tombstone(&mut self, room_name: &RoomName, seq: u64) {
        let Some(message) = self.message_at(room_name, seq) else {
            return;
        };
        let room_name = room_name.clone();
        // Cluster mode: the shared log keeps the tombstone and tells every node, this one too.
        if let Some(room) = self.rooms.get(&room_name).filter(|r| r.shared.is_some()) {
            if message.body != Body::Deleted {
                let tombstone = encode_room_message(&RoomMessage { body: Body::Deleted, ..message });
                let epoch = room.epoch.clone();
                self.cluster_op(ClusterOp::Delete { room: room_name, epoch, seq, tombstone });
            }
            return;
        }
        if message.body != Body::Deleted {
            let json: Arc<str> = encode_room_message(&RoomMessage { body: Body::Deleted, ..message }).into();
            let Some(room) = self.rooms.get_mut(&room_name) else {
                return;
            };
            let old = room.history.replace(seq, json.clone(), None);
            self.staged_ops.push(StoreOp::Replace { room: room_name.clone(), seq, json });
            self.unref_blobs(old.and_then(|e| e.blob).into_iter().collect());
        }
        let members = self.rooms.get(&room_name).map(|r| r.members.clone()).unwrap_or_default();
        self.deliver(Recipients::Many(members), Frame::of(&ServerMsg::Deleted { room: room_name, seq }));
    }

    /// A moderator removes a member (every connection of its user, in token mode).
    pub(super) fn remove(&mut self, conn: ConnId, room: RoomName, target: PeerId, reason: Option<Reason>, now: Millis) {
        let Some(rights) = self.rights(conn, &room) else {
            return self.not_joined(conn, room, None);
        };
        if !rights.has(Right::Moderate) {
            return self.forbidden(conn, room, None, "you may not remove members of this room");
        }
        let target_conn = self.by_peer_id.get(&target).copied().filter(|t| self.rights(*t, &room).is_some());
        let Some(target_conn) = target_conn else {
            // Cluster mode: a member on another node is removed there.
            if let Some(member) = self.remote_members(&room).iter().find(|m| m.peer_id == target).cloned() {
                match member.user {
                    Some(user) => {
                        self.remove_user(Some(&room), &user, ErrorCode::Removed, reason, now);
                    }
                    None => self.cluster_op(ClusterOp::Remove(ClusterRemoval {
                        node: self.node().to_owned(),
                        room: Some(room),
                        who: Removed::Peer(target),
                        code: ErrorCode::Removed,
                        reason,
                        at: now,
                    })),
                }
                return;
            }
            let message = format!("no peer {target} in this room");
            return self.error(conn, ErrorCode::UnknownPeer, message, Some(room), None);
        };
        match self.peers.get(&target_conn).and_then(|p| p.identity.as_ref()).map(|i| i.user.clone()) {
            Some(user) => {
                self.remove_user(Some(&room), &user, ErrorCode::Removed, reason, now);
            }
            None => self.expel(target_conn, &room, ErrorCode::Removed, reason),
        }
    }

    /// Remove `user` from `room` (or, with none, from the server): every connection of theirs
    /// is told why and leaves (or is closed); tokens issued before now do not let them back.
    /// In cluster mode every other node does the same. Returns how many connections it
    /// touched here.
    pub fn remove_user(
        &mut self,
        room: Option<&RoomName>,
        user: &UserId,
        code: ErrorCode,
        reason: Option<Reason>,
        now: Millis,
    ) -> usize {
        if self.is_clustered() {
            let removal = ClusterRemoval {
                node: self.node().to_owned(),
                room: room.cloned(),
                who: Removed::User(user.clone()),
                code,
                reason: reason.clone(),
                at: now,
            };
            self.cluster_op(ClusterOp::Remove(removal));
        }
        self.remove_user_here(room, user, code, reason, now)
    }

    /// [`Engine::remove_user`] on this node only.
    pub(super) fn remove_user_here(
        &mut self,
        room: Option<&RoomName>,
        user: &UserId,
        code: ErrorCode,
        reason: Option<Reason>,
        now: Millis,
    ) -> usize {
        let mut conns: Vec<(ConnId, Millis)> = self
            .peers
            .iter()
            .filter_map(|(c, p)| {
                let identity = p.identity.as_ref().filter(|i| &i.user == user)?;
                (room.is_none_or(|r| p.membership(r).is_some())).then_some((*c, identity.expires))
            })
            .collect();
        conns.sort_unstable();
        let until = conns.iter().map(|(_, e)| *e).max().unwrap_or(now).max(now) + self.token_leeway();
        self.bars.insert((room.cloned(), user.clone()), Bar { at: now, until });
        self.staged_ops.push(StoreOp::Bar(Removal { room: room.cloned(), user: user.clone(), at: now, until }));
        for (conn, _) in &conns {
            match room {
                Some(room) => self.expel(*conn, room, code, reason.clone()),
                None => {
                    let message = reason.as_ref().map_or("you were removed from this server".into(), |r| r.to_string());
                    self.error(*conn, code, message, None, None);
                    self.close(*conn, code);
                }
            }
        }
        conns.len()
    }

    /// Take `conn` out of `room` and tell it why.
    pub(super) fn expel(&mut self, conn: ConnId, room: &RoomName, code: ErrorCode, reason: Option<Reason>) {
        if self.remove_member(conn, room) {
            self.send(conn, &ServerMsg::Removed { room: room.clone(), code, reason });
        }
    }

    pub(super) fn token_leeway(&self) -> Millis {
        match &self.config.auth {
            Auth::Token(auth) => auth.verifier.leeway_ms() + auth.expiry_grace_ms,
            Auth::Open => 0,
        }
    }

    /// Token mode: tell connections whose token is about to expire, close those whose token
    /// expired past the grace, forget removals whose tokens have all expired.
    pub(super) fn check_token_expiry(&mut self, now: Millis) {
        let Auth::Token(auth) = &self.config.auth else {
            return;
        };
        let (notice, grace) = (auth.expiry_notice_ms, auth.expiry_grace_ms);
        let mut expiring = Vec::new();
        let mut expired = Vec::new();
        for (conn, peer) in &self.peers {
            let Some(identity) = &peer.identity else { continue };
            if now > identity.expires.saturating_add(grace) {
                expired.push(*conn);
            } else if !peer.expiry_noticed && now.saturating_add(notice) >= identity.expires {
                expiring.push((*conn, identity.expires));
            }
        }
        expiring.sort_unstable();
        expired.sort_unstable();
        for (conn, expires) in expiring {
            if let Some(peer) = self.peers.get_mut(&conn) {
                peer.expiry_noticed = true;
            }
            self.send(conn, &ServerMsg::TokenExpiring { expires });
        }
        for conn in expired {
            let message = "the token expired and no new one came in time".into();
            self.error(conn, ErrorCode::TokenExpired, message, None, None);
            self.close(conn, ErrorCode::TokenExpired);
        }
        let lapsed: Vec<(Option<RoomName>, UserId)> =
            self.bars.iter().filter(|(_, bar)| bar.until <= now).map(|(key, _)| key.clone()).collect();
        for (room, user) in lapsed {
            self.bars.remove(&(room.clone(), user.clone()));
            self.staged_ops.push(StoreOp::Unbar { room, user });
        }
    }
}
