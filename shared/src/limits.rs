//! Protocol-wide hard limits. A server may configure lower ones and announces them in
//! [`crate::ServerLimits`]; it never accepts more than these.

/// The protocol this build speaks. Bumped on any incompatible wire change.
/// 2: rights on join, token refresh, removals, user ids on presence and messages.
pub const PROTOCOL_VERSION: u32 = 2;

/// Room names: 1..=64 characters from `[A-Za-z0-9_.-]`, so they fit in a URL path as they are;
/// `.` and `..` are not room names (URL normalizers would resolve them away).
pub const MAX_ROOM_NAME_LEN: usize = 64;
/// Display names: 1..=32 characters, no control characters (line breaks and tabs included) or
/// bidirectional overrides, not blank (spaces and invisible characters alone are blank).
pub const MAX_DISPLAY_NAME_CHARS: usize = 32;
/// Peer ids and epochs are server-made: 1..=32 characters from `[A-Za-z0-9_-]`.
pub const MAX_PEER_ID_LEN: usize = 32;
/// Client-chosen message ids: 1..=64 characters from `[A-Za-z0-9_.:-]`.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;
/// Access tokens: 1..=4096 printable ASCII characters.
pub const MAX_ACCESS_TOKEN_LEN: usize = 4096;
/// User ids (a token's `sub`): 1..=128 printable ASCII characters.
pub const MAX_USER_ID_LEN: usize = 128;
/// Removal and closing reasons: up to 200 characters (not blank).
pub const MAX_REASON_CHARS: usize = 200;
/// Chat text: up to 8,000 characters (not blank).
pub const MAX_CHAT_CHARS: usize = 8000;
/// SDP and ICE candidate strings are opaque, bounded by the frame limit only.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// File names: 1..=255 characters, no path separators, and the rules of display names.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// The server relays at most one typing notice per connection and room in this long (ms);
/// closer ones are dropped (they say nothing new).
pub const TYPING_MIN_INTERVAL_MS: u64 = 1000;
/// Clients send a typing notice at most this often while someone types (ms)...
pub const TYPING_SEND_EVERY_MS: u64 = 3000;
/// ...and show "is typing" this long after the last one (ms): past it, they stopped.
pub const TYPING_SHOWN_MS: u64 = 6000;
