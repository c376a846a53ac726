//! What the app's backend sees of the rooms and does to them (the backend API): lists,
//! presence, history pages, posting as the app, removals and closing. Same engine, same
//! rules as members' messages: a post gets the room's next sequence number and is durable
//! before anyone sees it.

use super::*;
use serde::Serialize;

/// A room in the list of rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomSummary {
    pub room: RoomName,
    pub members: usize,
    pub history_messages: usize,
    /// Bytes of the history kept (one machine; the shared log in Redis does not count them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_bytes: Option<usize>,
    pub last_seq: u64,
}

/// A member as presence shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    pub peer_id: PeerId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    pub name: DisplayName,
    /// When it joined (ms since the Unix epoch).
    pub since: Millis,
}

/// A page of a room's history: the messages after a sequence number, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub epoch: Epoch,
    pub last_seq: u64,
    /// The oldest message still kept (none: the history is empty).
    pub oldest_seq: Option<u64>,
    /// Each a [`RoomMessage`] as JSON, as stored.
    pub messages: Vec<Arc<str>>,
    /// Where the next page starts (the last message's number), when more follow.
    pub next_after: Option<u64>,
}

/// Who the app's posts are from.
pub const APP_PEER: &str = "app";

impl Engine {
    /// Rooms in name order after `after`, at most `limit`; and whether more follow.
    pub fn list_rooms(&self, after: Option<&RoomName>, limit: usize) -> (Vec<RoomSummary>, bool) {
        let mut names: Vec<&RoomName> =
            self.rooms.keys().filter(|name| after.is_none_or(|a| name.as_str() > a.as_str())).collect();
        names.sort_unstable();
        let more = names.len() > limit;
        let rooms = names
            .into_iter()
            .take(limit)
            .filter_map(|name| {
                let room = self.rooms.get(name)?;
                Some(RoomSummary {
                    room: name.clone(),
                    members: room.members.len(),
                    history_messages: room.history.len(),
                    history_bytes: Some(room.history.bytes()),
                    last_seq: room.last_committed,
                })
            })
            .collect();
        (rooms, more)
    }

    /// Who is in `room`, in join order; `None` when there is no such room.
    pub fn room_members(&self, room_name: &RoomName) -> Option<Vec<MemberInfo>> {
        let room = self.rooms.get(room_name)?;
        Some(
            room.members
                .iter()
                .filter_map(|conn| {
                    let peer = self.peers.get(conn)?;
                    let membership = peer.membership(room_name)?;
                    Some(MemberInfo {
                        peer_id: peer.id.clone(),
                        user: peer.identity.as_ref().map(|i| i.user.clone()),
                        name: membership.name.clone(),
                        since: membership.since,
                    })
                })
                .collect(),
        )
    }

    /// Up to `limit` messages of `room` after sequence number `after`; `None` when there is
    /// no such room.
    pub fn history_page(&self, room_name: &RoomName, after: u64, limit: usize) -> Option<HistoryPage> {
        let room = self.rooms.get(room_name)?;
        let mut entries = room.history.after(after);
        let page: Vec<&Entry> = entries.by_ref().take(limit).collect();
        let more = entries.next().is_some();
        Some(HistoryPage {
            epoch: room.epoch.clone(),
            last_seq: room.last_committed,
            oldest_seq: room.history.first_seq(),
            next_after: page.last().filter(|_| more).map(|e| e.seq),
            messages: page.into_iter().map(|e| e.json.clone()).collect(),
        })
    }

    /// Post `body` into `room` as the app, shown as `name`. It gets the room's next sequence
    /// number (returned) and, once durable, goes to every member and comes back as
    /// [`Output::Posted`] with `ticket`. A room that does not exist is made.
    pub fn post_as_app(
        &mut self,
        room_name: RoomName,
        name: DisplayName,
        id: Option<ClientMsgId>,
        body: Body,
        ticket: u64,
        now: Millis,
    ) -> Result<u64, (ErrorCode, String)> {
        self.last_now = now;
        if let Body::File { hash, .. } = &body {
            if !self.known_blobs.contains(hash) && !self.is_clustered() {
                return Err((ErrorCode::UnknownBlob, "no such file on the server: upload it first".into()));
            }
        }
        if body.is_server_only() {
            return Err((ErrorCode::InvalidField, "a message cannot be posted deleted".into()));
        }
        if body.target().is_some() {
            return Err((ErrorCode::InvalidField, "only a message's author edits it, from the room".into()));
        }
        if self.unpersisted >= self.config.max_unpersisted {
            return Err((ErrorCode::Overloaded, "storage is behind; retry later".into()));
        }
        if !self.ensure_room(&room_name) {
            return Err((ErrorCode::ServerFull, "the server holds as many rooms as it may".into()));
        }
        let id = match id {
            Some(id) => id,
            None => self.new_message_id(),
        };
        let Ok(from) = PeerId::try_from(APP_PEER) else { unreachable!("a valid constant") };
        self.stage_message(room_name.clone(), (from, name, None), id, body, Origin::App(ticket), now);
        Ok(self.rooms.get(&room_name).map_or(0, |r| r.last_assigned))
    }

    /// Close `room`: every member leaves it, told `room_closed` and `reason`. With
    /// `delete_history`, its history goes too (from memory and the store) and the room is
    /// gone. Returns how many members were told, or `None` when there is no such room.
    pub fn close_room(
        &mut self,
        room_name: &RoomName,
        reason: Option<Reason>,
        delete_history: bool,
        delete_files: bool,
    ) -> Option<usize> {
        // Cluster mode: every node closes the room for its members; the log goes from Redis.
        if self.is_clustered() {
            let removal = ClusterRemoval {
                node: self.node().to_owned(),
                room: Some(room_name.clone()),
                who: Removed::Everyone { files: delete_files },
                code: ErrorCode::RoomClosed,
                reason: reason.clone(),
                at: self.last_now,
            };
            self.cluster_op(ClusterOp::Remove(removal));
            if delete_history {
                self.cluster_op(ClusterOp::DeleteRoom { room: room_name.clone(), files: delete_files });
            }
            let members = self.rooms.get(room_name).map(|r| r.members.clone()).unwrap_or_default();
            for conn in &members {
                self.expel(*conn, room_name, ErrorCode::RoomClosed, reason.clone());
            }
            return Some(members.len());
        }
        let members = self.rooms.get(room_name)?.members.clone();
        for conn in &members {
            self.expel(*conn, room_name, ErrorCode::RoomClosed, reason.clone());
        }
        if delete_history {
            if let Some(room) = self.rooms.get_mut(room_name) {
                let blobs: Vec<BlobHash> = room.history.after(0).filter_map(|e| e.blob.clone()).collect();
                room.history = History::default();
                self.unref_blobs(blobs);
            }
            self.drop_room(room_name);
        }
        Some(members.len())
    }
}
