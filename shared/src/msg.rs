//! The messages, one enum per direction.
//!
//! JSON shape: an object tagged by `"type"` (snake_case variant name). Optional fields are left
//! out when empty. Unknown fields are ignored, so a newer peer may add optional fields without
//! breaking an older one; anything else is a protocol version bump.

use crate::auth::Rights;
use crate::error::ErrorCode;
use crate::ids::*;
use serde::{Deserialize, Serialize};

/// Browser → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message on every connection.
    Hello {
        protocol: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<AccessToken>,
        /// This browser's lasting secret, so it is known as the same browser after a reload
        /// (its messages stay its own to edit and delete).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<ClientKey>,
    },
    /// Enter a room (created on first join). With `resume`, the server sends exactly what came
    /// after `resume.last_seq`; without, the room's whole cached history.
    Join {
        room: RoomName,
        name: DisplayName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<AccessToken>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeFrom>,
    },
    /// Leave a room.
    Leave { room: RoomName },
    /// WebRTC signaling for one peer in the same room; relayed as it is.
    Signal { room: RoomName, to: PeerId, signal: Signal },
    /// A message for everyone in the room, kept in its history. Acked with [`ServerMsg::Ack`].
    Publish { room: RoomName, id: ClientMsgId, body: Body },
    /// A new token for this connection (token mode), before the current one expires; answered
    /// with [`ServerMsg::TokenAccepted`]. Rights in each room follow the new token.
    Refresh { token: AccessToken },
    /// Delete message `seq` from the room's history (and its edits): your own (by your user
    /// in token mode; in open mode by this connection, or this browser by its
    /// [`ClientKey`]), or anyone's with the `moderate` right.
    Delete { room: RoomName, seq: u64 },
    /// "I am typing in `room`": relayed at once to the room's other members as
    /// [`ServerMsg::Typing`]; neither stored nor sequenced. Clients send it at most every few
    /// seconds while typing; the server drops notices closer than
    /// [`crate::limits::TYPING_MIN_INTERVAL_MS`].
    Typing { room: RoomName },
    /// Remove a member from the room (needs the `moderate` right); they are told `reason`.
    Remove {
        room: RoomName,
        peer: PeerId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Reason>,
    },
}

impl ClientMsg {
    /// The `"type"` tag of every variant, for telling an unknown type from a bad field. Tests
    /// check it against [`ClientMsg::kind`], whose match the compiler keeps exhaustive.
    pub const TYPES: &'static [&'static str] =
        &["hello", "join", "leave", "signal", "publish", "refresh", "delete", "remove", "typing"];

    /// This message's `"type"` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Hello { .. } => "hello",
            ClientMsg::Join { .. } => "join",
            ClientMsg::Leave { .. } => "leave",
            ClientMsg::Signal { .. } => "signal",
            ClientMsg::Publish { .. } => "publish",
            ClientMsg::Refresh { .. } => "refresh",
            ClientMsg::Delete { .. } => "delete",
            ClientMsg::Remove { .. } => "remove",
            ClientMsg::Typing { .. } => "typing",
        }
    }

    /// The first message of a connection, for this build's protocol, without a token.
    pub fn hello() -> Self {
        ClientMsg::Hello { protocol: crate::PROTOCOL_VERSION, token: None, client: None }
    }
}

/// Where a reconnecting client left off in a room: the room's epoch (its resume token) and the
/// last sequence number it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeFrom {
    pub epoch: Epoch,
    pub last_seq: u64,
}

/// WebRTC signaling. The server does not look inside; it only checks the shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u16>,
    },
    EndOfCandidates,
}

/// What a room message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Chat text, shown to people.
    Chat { text: ChatText },
    /// Arbitrary application JSON (cursor positions, game moves, ...).
    Data { data: serde_json::Value },
    /// A file in the server's blob cache (uploaded first), kept while this message is in the
    /// room's history.
    File { hash: BlobHash, name: FileName, size: u64, mime: MediaType },
    /// What is left of a deleted message in the history: who and when, not what. Only the
    /// server writes it (a publish of it is refused).
    Deleted,
    /// A new text for chat message `of`, posted by its author. It is a message of its own,
    /// sequenced and kept like any other, so a late joiner and a reconnecting client see the
    /// edit exactly as those who were there: apps show message `of` with the newest text and
    /// do not show the edit itself.
    Edit { of: u64, text: ChatText },
    /// Message `of` (and its edits) was deleted, by the member this message is from. Sequenced
    /// like any message, so that a client resuming after the deletion learns of it: apps show
    /// message `of` as [`Body::Deleted`] and do not show the deletion itself. Only the server
    /// writes it, for a [`crate::ClientMsg::Delete`].
    Deletion { of: u64 },
}

impl Body {
    /// The message this one changes (an edit's or a deletion's target), if any.
    pub fn target(&self) -> Option<u64> {
        match self {
            Body::Edit { of, .. } | Body::Deletion { of } => Some(*of),
            _ => None,
        }
    }

    /// Only the server writes it: a deletion's record or what is left of a deleted message.
    pub fn is_server_only(&self) -> bool {
        matches!(self, Body::Deleted | Body::Deletion { .. })
    }
}

/// One message of a room's history, as stored and as delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomMessage {
    /// Position in the room's history: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    pub from: PeerId,
    pub name: DisplayName,
    /// The sender's id for this message.
    pub id: ClientMsgId,
    /// The sender's user id (token mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub at: u64,
    pub body: Body,
}

/// A peer present in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    pub name: DisplayName,
    /// Their user id (token mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// They may go live here: the room's host (open mode: its owner; token mode: the token's
    /// `broadcast` right).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
}

/// Who a connection is, from its token (token mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: UserId,
    pub name: DisplayName,
    /// When the token expires (ms since the Unix epoch); send [`ClientMsg::Refresh`] before.
    pub expires: u64,
}

/// A STUN or TURN server for `RTCPeerConnection`'s `iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The limits this server enforces, announced in [`ServerMsg::Welcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    pub max_frame_bytes: u64,
    pub max_rooms_per_connection: u32,
    pub max_peers_per_room: u32,
    /// Sustained messages per second per connection (publish and signal); bursts go higher.
    pub messages_per_second: u32,
    pub history_max_messages: u64,
    pub history_max_age_secs: u64,
}

/// Server → browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to a compatible [`ClientMsg::Hello`].
    Welcome {
        protocol: u32,
        peer_id: PeerId,
        limits: ServerLimits,
        ice_servers: Vec<IceServer>,
        /// In token mode, who the token says you are. The name is the one others see (a
        /// client cannot pick another).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserInfo>,
    },
    /// You are in `room`. History (or the resume notice) follows, then live messages.
    Joined {
        room: RoomName,
        epoch: Epoch,
        /// The newest sequence number in the room when you joined (0: none yet).
        last_seq: u64,
        /// Who else is here.
        peers: Vec<PeerInfo>,
        /// What you may do here: the app shows only the controls that will work. (Absent from
        /// protocol 1 servers, which had no rights: read as none.)
        #[serde(default)]
        rights: Rights,
    },
    /// A batch of history, oldest first. `done` on the last batch of a join.
    History {
        room: RoomName,
        messages: Vec<RoomMessage>,
        done: bool,
    },
    /// Some of what you asked to resume from was evicted; history resumes at
    /// `oldest_available`.
    HistoryTruncated {
        room: RoomName,
        requested_after: u64,
        oldest_available: u64,
    },
    /// The room's history is not the one you knew (the server lost its store, or the room
    /// expired): `epoch` is the new one and the whole current history follows.
    HistoryReset {
        room: RoomName,
        epoch: Epoch,
    },
    PeerJoined {
        room: RoomName,
        peer: PeerInfo,
    },
    PeerLeft {
        room: RoomName,
        peer_id: PeerId,
    },
    /// What others see of `peer` changed (open mode: the room's host moved to or from it).
    PeerUpdated {
        room: RoomName,
        peer: PeerInfo,
    },
    /// You left `room`.
    Left {
        room: RoomName,
    },
    /// Signaling from `from`, relayed.
    Signal {
        room: RoomName,
        from: PeerId,
        signal: Signal,
    },
    /// A live room message.
    Message {
        room: RoomName,
        message: RoomMessage,
    },
    /// Permission to upload to and download from the room's files over HTTP, as a bearer
    /// token; sent after `joined` and valid until `expires` (ms since the Unix epoch).
    Grant {
        room: RoomName,
        token: String,
        expires: u64,
    },
    /// You own the room (you have been in it longest): this key lets you go live over WHIP
    /// and record the broadcast. It passes to the next owner when you leave.
    StreamKey {
        room: RoomName,
        key: String,
    },
    /// The room's live broadcast changed (sent on join too, when there is one).
    Broadcast {
        room: RoomName,
        state: crate::media::BroadcastState,
    },
    /// Message `seq` of `room` was deleted: its body is [`Body::Deleted`] in the history now.
    /// (Sent at once; the [`Body::Deletion`] that records it follows as a room message.)
    Deleted {
        room: RoomName,
        seq: u64,
    },
    /// `peer_id` is typing in `room` (shown for a few seconds, or until its message comes).
    Typing {
        room: RoomName,
        peer_id: PeerId,
    },
    /// Your rights in `room` changed (a refreshed token, or the room's ownership in open mode).
    Rights {
        room: RoomName,
        rights: Rights,
    },
    /// Your token expires at `expires` (ms since the Unix epoch): send [`ClientMsg::Refresh`]
    /// with a new one before, or the connection is closed with `token_expired`.
    TokenExpiring {
        expires: u64,
    },
    /// The token of a [`ClientMsg::Refresh`] is in force, until `expires`.
    TokenAccepted {
        expires: u64,
    },
    /// You are no longer in `room`: `code` is `removed` (by a moderator or the app) or
    /// `room_closed`; `reason` is for people.
    Removed {
        room: RoomName,
        code: ErrorCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Reason>,
    },
    /// Your message `id` is stored as `seq`.
    Ack {
        room: RoomName,
        id: ClientMsgId,
        seq: u64,
    },
    /// Something went wrong. `room` and `id` say what it was about, when known.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
}

impl ServerMsg {
    /// The `"type"` tag of every variant (see [`ClientMsg::TYPES`]).
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "joined",
        "history",
        "history_truncated",
        "history_reset",
        "peer_joined",
        "peer_left",
        "left",
        "signal",
        "message",
        "grant",
        "stream_key",
        "broadcast",
        "deleted",
        "rights",
        "token_expiring",
        "token_accepted",
        "removed",
        "ack",
        "error",
        "typing",
        "peer_updated",
    ];

    /// This message's `"type"` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMsg::Welcome { .. } => "welcome",
            ServerMsg::Joined { .. } => "joined",
            ServerMsg::History { .. } => "history",
            ServerMsg::HistoryTruncated { .. } => "history_truncated",
            ServerMsg::HistoryReset { .. } => "history_reset",
            ServerMsg::PeerJoined { .. } => "peer_joined",
            ServerMsg::PeerLeft { .. } => "peer_left",
            ServerMsg::Left { .. } => "left",
            ServerMsg::Signal { .. } => "signal",
            ServerMsg::Message { .. } => "message",
            ServerMsg::Grant { .. } => "grant",
            ServerMsg::StreamKey { .. } => "stream_key",
            ServerMsg::Broadcast { .. } => "broadcast",
            ServerMsg::Deleted { .. } => "deleted",
            ServerMsg::Rights { .. } => "rights",
            ServerMsg::TokenExpiring { .. } => "token_expiring",
            ServerMsg::TokenAccepted { .. } => "token_accepted",
            ServerMsg::Removed { .. } => "removed",
            ServerMsg::Ack { .. } => "ack",
            ServerMsg::Error { .. } => "error",
            ServerMsg::Typing { .. } => "typing",
            ServerMsg::PeerUpdated { .. } => "peer_updated",
        }
    }

    /// An error about nothing in particular.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error { code, message: message.into(), room: None, id: None }
    }
}
