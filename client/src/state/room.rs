//! One room as the person sees it, and how everything that happens changes it. Pure: no
//! browser API, so it is tested natively.

use relaycast_shared::limits::TYPING_SHOWN_MS;
use relaycast_shared::*;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// The connection as shown to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Online,
    /// Lost; the next attempt is at `retry_at` (ms since the Unix epoch).
    Reconnecting {
        attempt: u32,
        retry_at: u64,
    },
    /// Given up for a reason retrying cannot fix (version mismatch, room full, ...).
    Offline,
}

/// Something the person should read, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    ServerUnreachable,
    ProtocolMismatch(String),
    RoomFull,
    /// No token, or one the server refused (not genuine, expired).
    NoAccess(ErrorCode, String),
    /// The token does not let this user into this room.
    NotAllowedHere,
    /// A moderator or the app removed us from the room (or closed it).
    Removed {
        closed: bool,
        reason: Option<String>,
    },
    Rejected(ErrorCode, String),
}

impl Problem {
    pub fn text(&self) -> String {
        match self {
            Problem::ServerUnreachable => "The server cannot be reached. Retrying…".into(),
            Problem::ProtocolMismatch(m) => {
                format!("This app and the server speak different protocol versions ({m}). Reload the page.")
            }
            Problem::RoomFull => "This room is full. Try another room or come back later.".into(),
            Problem::NoAccess(ErrorCode::TokenExpired, _) => {
                "Your access to this room has expired. Open the room again from the app that invited you.".into()
            }
            Problem::NoAccess(_, m) => format!(
                "You need an invitation to join: open this room from the app that sent you here. (The server said: {m})"
            ),
            Problem::NotAllowedHere => "Your invitation is for another room: you may not join this one.".into(),
            Problem::Removed { closed: false, reason } => match reason {
                Some(r) => format!("You were removed from this room: {r}"),
                None => "You were removed from this room.".into(),
            },
            Problem::Removed { closed: true, reason } => match reason {
                Some(r) => format!("This room was closed: {r}"),
                None => "This room was closed.".into(),
            },
            Problem::Rejected(code, m) => format!("{m} ({code})"),
        }
    }

    /// Retrying will not help.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Problem::ProtocolMismatch(_)
                | Problem::RoomFull
                | Problem::NoAccess(..)
                | Problem::NotAllowedHere
                | Problem::Removed { .. }
        )
    }
}

/// A line in the chat that is not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Messages before `oldest` were evicted while we were away.
    Truncated { oldest: u64 },
    /// The server's history is not the one we knew; what follows is all there is.
    Reset,
}

/// A message of ours the server has not acked yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: ClientMsgId,
    pub body: Body,
    pub at: u64,
}

/// A line of the chat: a message, or a notice placed after the message it follows. Messages
/// are shared (`Rc`): the state is cloned for every view update, its lines are not.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Message(Rc<RoomMessage>),
    Notice(Notice),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoomState {
    pub room: RoomName,
    pub name: DisplayName,
    pub status: Status,
    pub me: Option<PeerId>,
    pub epoch: Option<Epoch>,
    pub peers: Vec<PeerInfo>,
    /// Messages in sequence order, each once, with notices where they happened.
    pub lines: Vec<Line>,
    pub last_seq: u64,
    /// Ours, not yet acked, in the order sent.
    pub pending: Vec<Pending>,
    /// Ids of every message this session sent: our messages stay marked as ours after a
    /// reconnect, when the server has given us a new peer id.
    pub mine: HashSet<ClientMsgId>,
    /// This browser's lasting id: every message id we make starts with it and a dot, so our
    /// messages are known as ours after a reload too (open mode; token mode has the user).
    pub client_id: Option<String>,
    /// The join's history is complete (live messages follow).
    pub synced: bool,
    pub problem: Option<Problem>,
    pub ice_servers: Vec<IceServer>,
    /// The room's file grant (bearer token for the blob API), when the server gave one.
    pub grant: Option<String>,
    /// The stream key, while our rights let us go live or record.
    pub stream_key: Option<String>,
    /// What we may do here, as the server said on join (and since).
    pub rights: Rights,
    /// Who the token says we are (token mode), and when it expires.
    pub user: Option<UserInfo>,
    /// The server asked for a new token (it expires at this time, ms).
    pub token_expiring: Option<u64>,
    /// The room's live broadcast, as the server last told.
    pub broadcast: relaycast_shared::media::BroadcastState,
    /// Who is typing, until when (ms): set by their notices, cleared by their message.
    pub typing: Vec<(PeerId, u64)>,
}

/// Everything that can happen to a room view.
#[derive(Debug, Clone)]
pub enum Action {
    Connecting,
    Server(ServerMsg),
    /// The socket closed (or never opened); the next attempt is scheduled.
    Lost {
        attempt: u32,
        retry_at: u64,
    },
    /// We send a message: it shows as pending until acked.
    Publish(Pending),
}

impl RoomState {
    pub fn new(room: RoomName, name: DisplayName) -> Self {
        Self {
            room,
            name,
            status: Status::Connecting,
            me: None,
            epoch: None,
            peers: Vec::new(),
            lines: Vec::new(),
            last_seq: 0,
            pending: Vec::new(),
            mine: HashSet::new(),
            client_id: None,
            synced: false,
            problem: None,
            ice_servers: Vec::new(),
            stream_key: None,
            broadcast: Default::default(),
            typing: Vec::new(),
            grant: None,
            rights: Rights::NONE,
            user: None,
            token_expiring: None,
        }
    }

    /// Where a rejoin should resume from.
    pub fn resume(&self) -> Option<ResumeFrom> {
        self.epoch.clone().map(|epoch| ResumeFrom { epoch, last_seq: self.last_seq })
    }

    /// Apply `action` and return what the app must send in reply: the join after the
    /// server's welcome (resuming where our history stops), and after a rejoin's history our
    /// messages it did not have (each once, in order).
    pub fn update(&mut self, action: Action) -> Vec<ClientMsg> {
        let mut out = Vec::new();
        if let Action::Server(ServerMsg::Welcome { .. }) = &action {
            out.push(ClientMsg::Join {
                room: self.room.clone(),
                name: self.name.clone(),
                token: None,
                resume: self.resume(),
            });
        }
        let history_done = matches!(action, Action::Server(ServerMsg::History { done: true, .. }));
        self.apply(action);
        if history_done {
            // History is in: whatever is still pending did not reach the server (or it would
            // be in there). Send it now, once.
            out.extend(self.pending.iter().map(|p| self.publish_msg(p)));
        }
        out
    }

    /// The publish of a pending message of ours.
    pub fn publish_msg(&self, p: &Pending) -> ClientMsg {
        ClientMsg::Publish { room: self.room.clone(), id: p.id.clone(), body: p.body.clone() }
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Connecting => {
                if self.status != Status::Offline {
                    self.status = Status::Connecting;
                }
            }
            Action::Lost { attempt, retry_at } => {
                self.synced = false;
                self.peers.clear();
                if !self.problem.as_ref().is_some_and(Problem::is_final) {
                    self.status = Status::Reconnecting { attempt, retry_at };
                    if attempt >= 2 {
                        self.problem = Some(Problem::ServerUnreachable);
                    }
                }
            }
            Action::Publish(p) => {
                self.mine.insert(p.id.clone());
                self.pending.push(p);
            }
            Action::Server(msg) => self.server(msg),
        }
    }

    fn server(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { peer_id, ice_servers, user, .. } => {
                self.me = Some(peer_id);
                self.ice_servers = ice_servers;
                // In token mode the name is the token's.
                if let Some(user) = &user {
                    self.name = user.name.clone();
                }
                self.user = user;
                self.token_expiring = None;
                if self.problem == Some(Problem::ServerUnreachable) {
                    self.problem = None;
                }
            }
            ServerMsg::Joined { epoch, peers, rights, .. } => {
                self.status = Status::Online;
                self.epoch = Some(epoch);
                self.peers = peers;
                self.rights = rights;
                // A (re)join: the server says again who owns the room and what is live.
                self.stream_key = None;
                self.broadcast = Default::default();
            }
            ServerMsg::HistoryTruncated { oldest_available, .. } => {
                self.lines.push(Line::Notice(Notice::Truncated { oldest: oldest_available }))
            }
            ServerMsg::HistoryReset { epoch, .. } => {
                self.epoch = Some(epoch);
                self.last_seq = 0;
                self.lines.retain(|l| matches!(l, Line::Notice(_)));
                self.lines.push(Line::Notice(Notice::Reset));
            }
            ServerMsg::History { messages, done, .. } => {
                messages.into_iter().for_each(|m| self.add(m));
                self.synced |= done;
            }
            ServerMsg::Message { message, .. } => self.add(message),
            ServerMsg::Ack { id, seq, .. } => {
                // Ours are not echoed back: the ack makes the pending one a message.
                if let Some(i) = self.pending.iter().position(|p| p.id == id) {
                    let p = self.pending.remove(i);
                    if let Some(me) = self.me.clone() {
                        let user = self.user.as_ref().map(|u| u.id.clone());
                        let msg =
                            RoomMessage { seq, from: me, name: self.name.clone(), id, user, at: p.at, body: p.body };
                        self.add(msg);
                    }
                }
            }
            ServerMsg::PeerJoined { peer, .. } => {
                if !self.peers.iter().any(|p| p.id == peer.id) {
                    self.peers.push(peer);
                }
            }
            ServerMsg::PeerUpdated { peer, .. } => {
                if let Some(p) = self.peers.iter_mut().find(|p| p.id == peer.id) {
                    *p = peer;
                }
            }
            // Timed: the session calls `typing_seen` with the clock.
            ServerMsg::Typing { .. } => {}
            ServerMsg::PeerLeft { peer_id, .. } => {
                self.typing.retain(|(p, _)| *p != peer_id);
                self.peers.retain(|p| p.id != peer_id)
            }
            ServerMsg::Error { code, message, id, .. } => self.error(code, message, id),
            ServerMsg::Grant { token, .. } => self.grant = Some(token),
            ServerMsg::StreamKey { key, .. } => self.stream_key = Some(key),
            ServerMsg::Broadcast { state, .. } => self.broadcast = state,
            ServerMsg::Rights { rights, .. } => {
                self.rights = rights;
                if !rights.has(Right::Broadcast) && !rights.has(Right::Record) {
                    self.stream_key = None;
                }
            }
            ServerMsg::Deleted { seq, .. } => self.tombstone(|m| m.seq == seq),
            ServerMsg::TokenExpiring { expires } => self.token_expiring = Some(expires),
            ServerMsg::TokenAccepted { expires } => {
                self.token_expiring = None;
                if let Some(user) = &mut self.user {
                    user.expires = expires;
                }
            }
            ServerMsg::Removed { code, reason, .. } => {
                self.status = Status::Offline;
                self.rights = Rights::NONE;
                self.stream_key = None;
                self.peers.clear();
                let reason = reason.map(|r| r.to_string());
                self.problem = Some(Problem::Removed { closed: code == ErrorCode::RoomClosed, reason });
            }
            ServerMsg::Left { .. } | ServerMsg::Signal { .. } => {}
        }
    }

    fn error(&mut self, code: ErrorCode, message: String, id: Option<ClientMsgId>) {
        self.problem = Some(match code {
            ErrorCode::UnsupportedProtocol => {
                self.status = Status::Offline;
                Problem::ProtocolMismatch(message)
            }
            ErrorCode::RoomFull => {
                self.status = Status::Offline;
                Problem::RoomFull
            }
            ErrorCode::Unauthorized | ErrorCode::TokenExpired if id.is_none() => {
                self.status = Status::Offline;
                Problem::NoAccess(code, message)
            }
            ErrorCode::Forbidden if id.is_none() && self.epoch.is_none() => {
                self.status = Status::Offline;
                Problem::NotAllowedHere
            }
            ErrorCode::Removed if id.is_none() => {
                self.status = Status::Offline;
                Problem::Removed { closed: false, reason: Some(message) }
            }
            _ => Problem::Rejected(code, message),
        });
        // A refused message is not pending any more: it will not be acked.
        if let Some(id) = id {
            self.pending.retain(|p| p.id != id);
        }
    }

    /// Add in sequence order, once. A recovered message that is one of our pending ones
    /// was stored before we lost its ack: it is no longer pending (and must not be resent).
    fn add(&mut self, message: RoomMessage) {
        if message.seq <= self.last_seq {
            return;
        }
        self.last_seq = message.seq;
        self.typing.retain(|(p, _)| *p != message.from);
        self.pending.retain(|p| p.id != message.id || !self.mine.contains(&message.id));
        // A deletion we missed (we resumed after it): the message and its edits go.
        if let Body::Deletion { of } = message.body {
            self.tombstone(|m| m.seq == of || matches!(m.body, Body::Edit { of: e, .. } if e == of));
        }
        self.lines.push(Line::Message(Rc::new(message)));
    }

    /// What is left of the messages that `deleted` picks: who and when, not what.
    fn tombstone(&mut self, deleted: impl Fn(&RoomMessage) -> bool) {
        for line in &mut self.lines {
            if let Line::Message(m) = line {
                if m.body != Body::Deleted && deleted(m) {
                    Rc::make_mut(m).body = Body::Deleted;
                }
            }
        }
    }

    /// The newest text of each edited message (by sequence number), from the edits in the
    /// history (a deleted edit no longer counts). Edits are messages of their own so that a
    /// late joiner or a reconnect gets them like anything else.
    pub fn edits(&self) -> HashMap<u64, &ChatText> {
        let mut out = HashMap::new();
        for m in self.messages() {
            if let Body::Edit { of, text } = &m.body {
                out.insert(*of, text);
            }
        }
        out
    }

    /// `peer` said it is typing, at `now` (ms): shown for [`TYPING_SHOWN_MS`].
    pub fn typing_seen(&mut self, peer: PeerId, now: u64) {
        self.typing.retain(|(p, _)| *p != peer);
        self.typing.push((peer, now + TYPING_SHOWN_MS));
    }

    /// The names of those typing at `now`, in the order they started.
    pub fn typing_names(&self, now: u64) -> Vec<&str> {
        self.typing
            .iter()
            .filter(|(_, until)| *until > now)
            .filter_map(|(id, _)| self.peers.iter().find(|p| &p.id == id).map(|p| p.name.as_str()))
            .collect()
    }

    /// "Bo is typing…", in words for one, two or more people (none: nothing to say).
    pub fn typing_label(&self, now: u64) -> Option<String> {
        match self.typing_names(now).as_slice() {
            [] => None,
            [one] => Some(format!("{one} is typing…")),
            [a, b] => Some(format!("{a} and {b} are typing…")),
            _ => Some("Several people are typing…".into()),
        }
    }

    /// Our edits not acked yet, by the message they change.
    pub fn pending_edits(&self) -> HashMap<u64, &ChatText> {
        self.pending
            .iter()
            .filter_map(|p| match &p.body {
                Body::Edit { of, text } => Some((*of, text)),
                _ => None,
            })
            .collect()
    }

    pub fn messages(&self) -> impl Iterator<Item = &RoomMessage> {
        self.lines.iter().filter_map(|l| match l {
            Line::Message(m) => Some(m.as_ref()),
            Line::Notice(_) => None,
        })
    }

    /// Joining failed and nothing in the room can work yet: a problem before the room was
    /// ever joined (the server unreachable, the room full, no access), or one that ended our
    /// membership (removed, the room closed). The room's controls are shut until it clears.
    pub fn locked_out(&self) -> bool {
        match &self.problem {
            None => false,
            Some(Problem::Removed { .. } | Problem::ProtocolMismatch(_)) => true,
            Some(_) => self.epoch.is_none(),
        }
    }

    pub fn is_mine(&self, m: &RoomMessage) -> bool {
        let by_client = self
            .client_id
            .as_deref()
            .is_some_and(|c| m.id.as_str().strip_prefix(c).is_some_and(|rest| rest.starts_with('.')));
        let by_user = m.user.is_some() && self.user.as_ref().map(|u| &u.id) == m.user.as_ref();
        self.me.as_ref() == Some(&m.from) || self.mine.contains(&m.id) || by_client || by_user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_that_could_not_be_joined_is_locked_and_one_that_was_is_not() {
        let mut s = RoomState::new(room(), DisplayName::try_from("Ada").unwrap());
        assert!(!s.locked_out());
        s.problem = Some(Problem::RoomFull);
        assert!(s.locked_out(), "never joined: nothing works");
        s.problem = Some(Problem::ServerUnreachable);
        assert!(s.locked_out());
        s.epoch = Some(Epoch::try_from("e1").unwrap());
        assert!(!s.locked_out(), "joined before: the chat still takes messages while it reconnects");
        s.problem = Some(Problem::Removed { closed: true, reason: None });
        assert!(s.locked_out(), "removed: the room is over for us");
    }

    #[test]
    fn our_messages_are_ours_after_a_reload_by_client_id_or_user() {
        let mut s = RoomState::new(room(), DisplayName::try_from("Ada").unwrap());
        s.client_id = Some("abc123".into());
        let msg = |id: &str, user: Option<&str>| RoomMessage {
            seq: 1,
            from: PeerId::try_from("old-peer").unwrap(),
            name: DisplayName::try_from("Ada").unwrap(),
            id: ClientMsgId::try_from(id).unwrap(),
            user: user.map(|u| UserId::try_from(u).unwrap()),
            at: 1,
            body: Body::Chat { text: ChatText::try_from("hi").unwrap() },
        };
        assert!(s.is_mine(&msg("abc123.x9-1", None)), "an id made by this browser, in an earlier session");
        assert!(!s.is_mine(&msg("abc1234.x9-1", None)), "another browser's id that merely starts alike");
        assert!(!s.is_mine(&msg("zzz.x9-1", None)));
        s.user = Some(UserInfo {
            id: UserId::try_from("user-7").unwrap(),
            name: DisplayName::try_from("Ada").unwrap(),
            expires: 0,
        });
        assert!(s.is_mine(&msg("from-another-device", Some("user-7"))), "token mode: the same user");
        assert!(!s.is_mine(&msg("zzz", Some("user-8"))));
    }

    fn room() -> RoomName {
        RoomName::try_from("r").unwrap()
    }
    fn peer(s: &str) -> PeerId {
        PeerId::try_from(s).unwrap()
    }
    fn chat(t: &str) -> Body {
        Body::Chat { text: ChatText::try_from(t).unwrap() }
    }
    fn msg(seq: u64, from: &str, id: &str) -> RoomMessage {
        RoomMessage {
            seq,
            from: peer(from),
            name: DisplayName::try_from("x").unwrap(),
            id: ClientMsgId::try_from(id).unwrap(),
            user: None,
            at: 0,
            body: chat("t"),
        }
    }
    fn state() -> RoomState {
        let mut s = RoomState::new(room(), DisplayName::try_from("me").unwrap());
        s.apply(Action::Server(ServerMsg::Welcome {
            protocol: PROTOCOL_VERSION,
            peer_id: peer("me1"),
            limits: ServerLimits {
                max_frame_bytes: 1,
                max_rooms_per_connection: 1,
                max_peers_per_room: 1,
                messages_per_second: 1,
                history_max_messages: 1,
                history_max_age_secs: 1,
            },
            ice_servers: vec![],
            user: None,
        }));
        s.apply(Action::Server(ServerMsg::Joined {
            room: room(),
            epoch: Epoch::try_from("e1").unwrap(),
            last_seq: 0,
            peers: vec![],
            rights: Rights::member(),
        }));
        s
    }
    fn seqs(s: &RoomState) -> Vec<u64> {
        s.messages().map(|m| m.seq).collect()
    }
    fn pending(id: &str) -> Pending {
        Pending { id: ClientMsgId::try_from(id).unwrap(), body: chat("mine"), at: 5 }
    }

    #[test]
    fn history_and_live_merge_once_in_order() {
        let mut s = state();
        s.apply(Action::Server(ServerMsg::History {
            room: room(),
            messages: vec![msg(1, "a", "1"), msg(2, "a", "2")],
            done: true,
        }));
        s.apply(Action::Server(ServerMsg::Message { room: room(), message: msg(2, "a", "2") }));
        s.apply(Action::Server(ServerMsg::Message { room: room(), message: msg(3, "a", "3") }));
        assert_eq!(seqs(&s), vec![1, 2, 3]);
        assert_eq!(s.resume().unwrap().last_seq, 3);
        assert!(s.synced);
    }

    #[test]
    fn own_message_is_pending_until_acked_then_shown_as_mine() {
        let mut s = state();
        s.apply(Action::Publish(pending("c1")));
        assert_eq!(s.pending.len(), 1);
        assert!(s.messages().next().is_none());
        s.apply(Action::Server(ServerMsg::Ack { room: room(), id: ClientMsgId::try_from("c1").unwrap(), seq: 1 }));
        assert!(s.pending.is_empty());
        let m = s.messages().next().unwrap().clone();
        assert_eq!((m.seq, s.is_mine(&m)), (1, true));
    }

    #[test]
    fn a_pending_message_found_in_recovered_history_is_not_pending_any_more() {
        let mut s = state();
        s.apply(Action::Publish(pending("c1")));
        s.apply(Action::Lost { attempt: 0, retry_at: 10 });
        assert!(matches!(s.status, Status::Reconnecting { .. }));
        // The server stored it, but the ack was lost with the connection.
        s.apply(Action::Server(ServerMsg::History {
            room: room(),
            messages: vec![msg(1, "old-me", "c1")],
            done: true,
        }));
        assert!(s.pending.is_empty(), "must not be resent");
        let m = s.messages().next().unwrap();
        assert!(s.is_mine(m), "still ours under the old peer id");
    }

    #[test]
    fn notices_for_truncation_and_reset() {
        let mut s = state();
        s.apply(Action::Server(ServerMsg::History { room: room(), messages: vec![msg(1, "a", "1")], done: true }));
        s.apply(Action::Server(ServerMsg::HistoryTruncated { room: room(), requested_after: 1, oldest_available: 5 }));
        assert_eq!(s.lines.last(), Some(&Line::Notice(Notice::Truncated { oldest: 5 })));
        s.apply(Action::Server(ServerMsg::HistoryReset { room: room(), epoch: Epoch::try_from("e2").unwrap() }));
        assert_eq!(s.last_seq, 0);
        assert_eq!(seqs(&s), Vec::<u64>::new());
        assert_eq!(s.resume().unwrap().epoch.as_str(), "e2");
    }

    #[test]
    fn problems_in_plain_words_and_which_are_final() {
        let mut s = state();
        s.apply(Action::Lost { attempt: 2, retry_at: 10 });
        assert_eq!(s.problem, Some(Problem::ServerUnreachable));
        s.apply(Action::Server(ServerMsg::error(ErrorCode::RoomFull, "the room is full")));
        assert_eq!(s.status, Status::Offline);
        assert!(s.problem.as_ref().unwrap().is_final());
        s.apply(Action::Lost { attempt: 3, retry_at: 20 });
        assert_eq!(s.status, Status::Offline, "a full room is not retried");
        let mut s = state();
        s.apply(Action::Server(ServerMsg::error(ErrorCode::UnsupportedProtocol, "server speaks 2")));
        assert!(s.problem.unwrap().text().contains("protocol"));
    }

    #[test]
    fn presence_follows_joins_and_leaves_and_clears_on_loss() {
        let mut s = state();
        let b = PeerInfo { id: peer("b"), name: DisplayName::try_from("B").unwrap(), user: None, host: false };
        s.apply(Action::Server(ServerMsg::PeerJoined { room: room(), peer: b.clone() }));
        s.apply(Action::Server(ServerMsg::PeerJoined { room: room(), peer: b.clone() }));
        assert_eq!(s.peers.len(), 1);
        let host = PeerInfo { host: true, ..b.clone() };
        s.apply(Action::Server(ServerMsg::PeerUpdated { room: room(), peer: host.clone() }));
        assert_eq!(s.peers, vec![host], "the host moved to b");
        let stranger = PeerInfo { id: peer("z"), ..b.clone() };
        s.apply(Action::Server(ServerMsg::PeerUpdated { room: room(), peer: stranger }));
        assert_eq!(s.peers.len(), 1, "an update of someone not here adds nobody");
        s.apply(Action::Server(ServerMsg::PeerLeft { room: room(), peer_id: b.id.clone() }));
        assert!(s.peers.is_empty());
        s.apply(Action::Server(ServerMsg::PeerJoined { room: room(), peer: b }));
        s.apply(Action::Lost { attempt: 0, retry_at: 1 });
        assert!(s.peers.is_empty(), "presence is re-learned on rejoin");
    }

    #[test]
    fn refusals_of_access_are_final_and_in_plain_words() {
        let mut s = RoomState::new(room(), DisplayName::try_from("me").unwrap());
        s.apply(Action::Server(ServerMsg::error(ErrorCode::Unauthorized, "this server needs an access token")));
        assert_eq!(s.status, Status::Offline);
        let problem = s.problem.clone().unwrap();
        assert!(problem.is_final() && problem.text().contains("invitation"), "{}", problem.text());
        s.apply(Action::Lost { attempt: 1, retry_at: 5 });
        assert_eq!(s.status, Status::Offline, "no retry without a token");

        let mut s = RoomState::new(room(), DisplayName::try_from("me").unwrap());
        s.apply(Action::Server(ServerMsg::error(ErrorCode::TokenExpired, "the token has expired")));
        assert!(s.problem.unwrap().text().contains("expired"));

        let mut s = RoomState::new(room(), DisplayName::try_from("me").unwrap());
        let forbidden = ServerMsg::Error {
            code: ErrorCode::Forbidden,
            message: "your token does not let you join r".into(),
            room: Some(room()),
            id: None,
        };
        s.apply(Action::Server(forbidden));
        assert_eq!(s.problem, Some(Problem::NotAllowedHere));
    }

    #[test]
    fn a_deleted_message_keeps_its_place_without_its_text() {
        let mut s = state();
        s.apply(Action::Server(ServerMsg::History {
            room: room(),
            messages: vec![msg(1, "a", "1"), msg(2, "b", "2")],
            done: true,
        }));
        s.apply(Action::Server(ServerMsg::Deleted { room: room(), seq: 1 }));
        let bodies: Vec<_> = s.messages().map(|m| (m.seq, m.body.clone())).collect();
        assert_eq!(bodies, vec![(1, Body::Deleted), (2, chat("t"))]);
    }

    #[test]
    fn a_deletion_missed_while_away_is_applied_when_resuming() {
        let mut s = state();
        let edit =
            RoomMessage { body: Body::Edit { of: 1, text: ChatText::try_from("e").unwrap() }, ..msg(3, "a", "3") };
        s.apply(Action::Server(ServerMsg::History {
            room: room(),
            messages: vec![msg(1, "a", "1"), msg(2, "b", "2"), edit],
            done: true,
        }));
        // Away; on resume the history after 3 has the deletion of 1 (the live notice was missed).
        let deletion = RoomMessage { body: Body::Deletion { of: 1 }, ..msg(4, "a", "4") };
        s.apply(Action::Server(ServerMsg::History { room: room(), messages: vec![deletion], done: true }));
        let bodies: Vec<_> = s.messages().map(|m| (m.seq, m.body.clone())).collect();
        assert_eq!(
            bodies,
            vec![(1, Body::Deleted), (2, chat("t")), (3, Body::Deleted), (4, Body::Deletion { of: 1 })],
            "the message and its edit are tombstones; the other message stays"
        );
        assert!(s.edits().is_empty(), "no earlier text stays behind");
        assert_eq!(s.last_seq, 4);
    }

    #[test]
    fn a_welcome_asks_to_join_where_our_history_stops_and_a_rejoins_history_releases_what_is_pending() {
        let mut s = RoomState::new(room(), DisplayName::try_from("Ada").unwrap());
        let welcome = || ServerMsg::Welcome {
            protocol: PROTOCOL_VERSION,
            peer_id: PeerId::try_from("me").unwrap(),
            limits: ServerLimits {
                max_frame_bytes: 65536,
                max_rooms_per_connection: 16,
                max_peers_per_room: 64,
                messages_per_second: 200,
                history_max_messages: 1000,
                history_max_age_secs: 86400,
            },
            ice_servers: vec![],
            user: None,
        };
        let joined = |last_seq| ServerMsg::Joined {
            room: room(),
            epoch: Epoch::try_from("e1").unwrap(),
            last_seq,
            peers: vec![],
            rights: Rights::member(),
        };
        assert_eq!(
            s.update(Action::Server(welcome())),
            vec![ClientMsg::Join { room: room(), name: s.name.clone(), token: None, resume: None }],
            "the first join asks for the whole history"
        );
        s.update(Action::Server(joined(0)));
        s.update(Action::Server(ServerMsg::History { room: room(), messages: vec![msg(1, "b", "1")], done: true }));
        // Lost; a message written offline; back.
        s.update(Action::Lost { attempt: 0, retry_at: 1 });
        let offline = Pending { id: ClientMsgId::try_from("p1").unwrap(), body: chat("offline"), at: 0 };
        s.update(Action::Publish(offline.clone()));
        let out = s.update(Action::Server(welcome()));
        assert!(
            matches!(&out[..], [ClientMsg::Join { resume: Some(r), .. }] if r.last_seq == 1),
            "the rejoin resumes after 1: {out:?}"
        );
        s.update(Action::Server(joined(1)));
        let out = s.update(Action::Server(ServerMsg::History { room: room(), messages: vec![], done: true }));
        assert_eq!(out, vec![s.publish_msg(&offline)], "sent once the history showed the server lacks it");
        assert!(s
            .update(Action::Server(ServerMsg::PeerLeft { room: room(), peer_id: PeerId::try_from("x").unwrap() }))
            .is_empty());
    }

    #[test]
    fn typing_shows_for_a_while_and_ends_with_the_message_or_the_leave() {
        let mut s = RoomState::new(room(), DisplayName::try_from("Ada").unwrap());
        let (bo, cy) = (PeerId::try_from("a").unwrap(), PeerId::try_from("c").unwrap());
        for (id, name) in [(&bo, "Bo"), (&cy, "Cy")] {
            let peer = PeerInfo { id: id.clone(), name: DisplayName::try_from(name).unwrap(), user: None, host: false };
            s.apply(Action::Server(ServerMsg::PeerJoined { room: room(), peer }));
        }
        s.typing_seen(bo.clone(), 1_000);
        s.typing_seen(cy.clone(), 2_000);
        assert_eq!(s.typing_names(2_500), vec!["Bo", "Cy"]);
        assert_eq!(s.typing_label(2_500).as_deref(), Some("Bo and Cy are typing…"));
        assert_eq!(s.typing_names(1_000 + TYPING_SHOWN_MS), vec!["Cy"], "Bo stopped");
        // Bo's message ends his typing at once; Cy leaving ends hers.
        s.typing_seen(bo.clone(), 3_000);
        s.apply(Action::Server(ServerMsg::Message { room: room(), message: msg(1, "a", "1") }));
        assert_eq!(s.typing_names(3_100), vec!["Cy"]);
        s.apply(Action::Server(ServerMsg::PeerLeft { room: room(), peer_id: cy }));
        assert!(s.typing_names(3_100).is_empty());
        assert_eq!(s.typing_label(3_100), None);
    }

    #[test]
    fn the_newest_edit_of_a_message_is_its_text_and_a_pending_one_shows_until_acked() {
        let mut s = RoomState::new(room(), DisplayName::try_from("Ada").unwrap());
        let edit = |of: u64, t: &str| Body::Edit { of, text: ChatText::try_from(t).unwrap() };
        let with = |seq: u64, body: Body| RoomMessage { body, ..msg(seq, "a", &seq.to_string()) };
        for m in [msg(1, "a", "1"), with(2, edit(1, "first fix")), with(3, edit(1, "second fix"))] {
            s.apply(Action::Server(ServerMsg::Message { room: room(), message: m }));
        }
        assert_eq!(s.edits().get(&1).map(|t| t.as_str()), Some("second fix"));
        // The newest edit deleted: the one before counts.
        s.apply(Action::Server(ServerMsg::Deleted { room: room(), seq: 3 }));
        assert_eq!(s.edits().get(&1).map(|t| t.as_str()), Some("first fix"));
        s.apply(Action::Publish(Pending { id: ClientMsgId::try_from("p1").unwrap(), body: edit(1, "third"), at: 0 }));
        assert_eq!(s.pending_edits().get(&1).map(|t| t.as_str()), Some("third"));
    }

    #[test]
    fn rights_and_removals_change_what_the_room_shows() {
        let mut s = state();
        assert!(s.rights.has(Right::Upload) && !s.rights.has(Right::Broadcast));
        s.apply(Action::Server(ServerMsg::StreamKey { room: room(), key: "k".into() }));
        s.apply(Action::Server(ServerMsg::Rights { room: room(), rights: Rights::parse_list("join").unwrap() }));
        assert_eq!((s.rights, s.stream_key.clone()), (Rights::parse_list("join").unwrap(), None));
        s.apply(Action::Server(ServerMsg::TokenExpiring { expires: 99 }));
        assert_eq!(s.token_expiring, Some(99));
        s.apply(Action::Server(ServerMsg::TokenAccepted { expires: 500 }));
        assert_eq!(s.token_expiring, None);
        let reason = Reason::try_from("spam").ok();
        s.apply(Action::Server(ServerMsg::Removed { room: room(), code: ErrorCode::Removed, reason }));
        assert_eq!(s.status, Status::Offline);
        assert_eq!(s.problem.as_ref().unwrap().text(), "You were removed from this room: spam");
        assert!(s.problem.unwrap().is_final());
    }
}
