//! Round-trip properties for every message, golden fixtures, and hostile input.
//! Runs natively and, compiled to wasm32, in headless Chromium (see README).

use proptest::prelude::*;
use relaycast_shared::codec::{encode_room_message, history_frame, message_frame};
use relaycast_shared::*;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn ascii_id(max: usize, extra: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').chain(extra.chars()).collect();
    prop::collection::vec(prop::sample::select(chars), 1..=max).prop_map(|v| v.into_iter().collect())
}

fn room() -> impl Strategy<Value = RoomName> {
    ascii_id(64, "_.-")
        .prop_filter("not a dot segment", |s| s != "." && s != "..")
        .prop_map(|s| RoomName::try_from(s).unwrap())
}
fn peer() -> impl Strategy<Value = PeerId> {
    ascii_id(32, "_-").prop_map(|s| PeerId::try_from(s).unwrap())
}
fn epoch() -> impl Strategy<Value = Epoch> {
    ascii_id(32, "_-").prop_map(|s| Epoch::try_from(s).unwrap())
}
fn msg_id() -> impl Strategy<Value = ClientMsgId> {
    ascii_id(64, "_.:-").prop_map(|s| ClientMsgId::try_from(s).unwrap())
}
fn text(max: usize) -> impl Strategy<Value = String> {
    // Printable text with some non-ASCII, never blank.
    "[a-zA-Z0-9 éü🚀\\n\"\\\\]{0,40}".prop_map(move |s| {
        let s: String = format!("x{s}").chars().take(max).collect();
        s
    })
}
/// One line of visible text: names have no line breaks.
fn one_line(max: usize) -> impl Strategy<Value = String> {
    text(max).prop_map(|s| s.replace('\n', " "))
}
fn name() -> impl Strategy<Value = DisplayName> {
    one_line(32).prop_map(|s| DisplayName::try_from(s).unwrap())
}
fn token() -> impl Strategy<Value = AccessToken> {
    ascii_id(200, "!#$%&*+./:;<=>?@[]^_`{|}~-").prop_map(|s| AccessToken::try_from(s).unwrap())
}
fn user() -> impl Strategy<Value = UserId> {
    ascii_id(128, "!#$%&*+./:;<=>?@[]^_`{|}~-|").prop_map(|s| UserId::try_from(s).unwrap())
}
fn reason() -> impl Strategy<Value = Reason> {
    text(200).prop_map(|s| Reason::try_from(s).unwrap())
}
fn rights() -> impl Strategy<Value = Rights> {
    prop::collection::vec(prop::sample::select(Right::ALL.to_vec()), 0..6).prop_map(|v| v.into_iter().collect())
}
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text(20).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        text(200).prop_map(|t| Body::Chat { text: ChatText::try_from(t).unwrap() }),
        json_value().prop_map(|data| Body::Data { data }),
        ("[0-9a-f]{64}", one_line(60), any::<u64>(), "[a-z]{1,10}/[a-z0-9.+-]{1,20}").prop_map(
            |(hash, name, size, mime)| {
                Body::File {
                    hash: BlobHash::try_from(hash).unwrap(),
                    name: FileName::try_from(name.replace(['/', '\\'], "_")).unwrap(),
                    size,
                    mime: MediaType::try_from(mime).unwrap(),
                }
            }
        ),
        Just(Body::Deleted),
        any::<u64>().prop_map(|of| Body::Deletion { of }),
        (any::<u64>(), text(200)).prop_map(|(of, t)| Body::Edit { of, text: ChatText::try_from(t).unwrap() }),
    ]
}
fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        text(300).prop_map(|sdp| Signal::Offer { sdp }),
        text(300).prop_map(|sdp| Signal::Answer { sdp }),
        (text(100), prop::option::of(text(5)), prop::option::of(any::<u16>())).prop_map(
            |(candidate, sdp_mid, sdp_m_line_index)| Signal::Candidate { candidate, sdp_mid, sdp_m_line_index }
        ),
        Just(Signal::EndOfCandidates),
    ]
}
fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (peer(), name(), prop::option::of(user()), any::<bool>()).prop_map(|(id, name, user, host)| PeerInfo {
        id,
        name,
        user,
        host,
    })
}
fn room_message() -> impl Strategy<Value = RoomMessage> {
    (any::<u64>(), peer(), name(), msg_id(), prop::option::of(user()), any::<u64>(), body())
        .prop_map(|(seq, from, name, id, user, at, body)| RoomMessage { seq, from, name, id, user, at, body })
}
fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::Malformed,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::FrameTooLarge,
        ErrorCode::BinaryUnsupported,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::HelloRequired,
        ErrorCode::AlreadyGreeted,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TokenExpired,
        ErrorCode::Removed,
        ErrorCode::RoomClosed,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::TooManyRooms,
        ErrorCode::RoomFull,
        ErrorCode::ServerFull,
        ErrorCode::UnknownPeer,
        ErrorCode::UnknownBlob,
        ErrorCode::UnknownMessage,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::SlowConsumer,
        ErrorCode::IdleTimeout,
        ErrorCode::HelloTimeout,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ])
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (any::<u32>(), prop::option::of(token()), prop::option::of("[A-Za-z0-9_-]{16,64}")).prop_map(
            |(protocol, token, client)| ClientMsg::Hello {
                protocol,
                token,
                client: client.map(|c| ClientKey::try_from(c).unwrap())
            }
        ),
        (room(), name(), prop::option::of(token()), prop::option::of((epoch(), any::<u64>()))).prop_map(
            |(room, name, token, resume)| ClientMsg::Join {
                room,
                name,
                token,
                resume: resume.map(|(epoch, last_seq)| ResumeFrom { epoch, last_seq }),
            }
        ),
        room().prop_map(|room| ClientMsg::Leave { room }),
        (room(), peer(), signal()).prop_map(|(room, to, signal)| ClientMsg::Signal { room, to, signal }),
        (room(), msg_id(), body()).prop_map(|(room, id, body)| ClientMsg::Publish { room, id, body }),
        token().prop_map(|token| ClientMsg::Refresh { token }),
        (room(), any::<u64>()).prop_map(|(room, seq)| ClientMsg::Delete { room, seq }),
        room().prop_map(|room| ClientMsg::Typing { room }),
        (room(), peer(), prop::option::of(reason())).prop_map(|(room, peer, reason)| ClientMsg::Remove {
            room,
            peer,
            reason
        }),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    let limits = (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
        |(a, b, c, d, e, f)| ServerLimits {
            max_frame_bytes: a,
            max_rooms_per_connection: b,
            max_peers_per_room: c,
            messages_per_second: d,
            history_max_messages: e,
            history_max_age_secs: f,
        },
    );
    let ice = (prop::collection::vec(text(30), 1..3), prop::option::of(text(10)), prop::option::of(text(10)))
        .prop_map(|(urls, username, credential)| IceServer { urls, username, credential });
    let user_info = (user(), name(), any::<u64>()).prop_map(|(id, name, expires)| UserInfo { id, name, expires });
    prop_oneof![
        (any::<u32>(), peer(), limits, prop::collection::vec(ice, 0..3), prop::option::of(user_info)).prop_map(
            |(protocol, peer_id, limits, ice_servers, user)| ServerMsg::Welcome {
                protocol,
                peer_id,
                limits,
                ice_servers,
                user
            }
        ),
        (room(), epoch(), any::<u64>(), prop::collection::vec(peer_info(), 0..4), rights()).prop_map(
            |(room, epoch, last_seq, peers, rights)| ServerMsg::Joined { room, epoch, last_seq, peers, rights }
        ),
        (room(), rights()).prop_map(|(room, rights)| ServerMsg::Rights { room, rights }),
        (room(), any::<u64>()).prop_map(|(room, seq)| ServerMsg::Deleted { room, seq }),
        (room(), peer()).prop_map(|(room, peer_id)| ServerMsg::Typing { room, peer_id }),
        any::<u64>().prop_map(|expires| ServerMsg::TokenExpiring { expires }),
        any::<u64>().prop_map(|expires| ServerMsg::TokenAccepted { expires }),
        (room(), error_code(), prop::option::of(reason())).prop_map(|(room, code, reason)| ServerMsg::Removed {
            room,
            code,
            reason
        }),
        (room(), prop::collection::vec(room_message(), 0..4), any::<bool>())
            .prop_map(|(room, messages, done)| ServerMsg::History { room, messages, done }),
        (room(), any::<u64>(), any::<u64>()).prop_map(|(room, requested_after, oldest_available)| {
            ServerMsg::HistoryTruncated { room, requested_after, oldest_available }
        }),
        (room(), epoch()).prop_map(|(room, epoch)| ServerMsg::HistoryReset { room, epoch }),
        (room(), peer_info()).prop_map(|(room, peer)| ServerMsg::PeerJoined { room, peer }),
        (room(), peer_info()).prop_map(|(room, peer)| ServerMsg::PeerUpdated { room, peer }),
        (room(), peer()).prop_map(|(room, peer_id)| ServerMsg::PeerLeft { room, peer_id }),
        room().prop_map(|room| ServerMsg::Left { room }),
        (room(), peer(), signal()).prop_map(|(room, from, signal)| ServerMsg::Signal { room, from, signal }),
        (room(), room_message()).prop_map(|(room, message)| ServerMsg::Message { room, message }),
        (room(), msg_id(), any::<u64>()).prop_map(|(room, id, seq)| ServerMsg::Ack { room, id, seq }),
        (room(), text(80), any::<u64>()).prop_map(|(room, token, expires)| ServerMsg::Grant { room, token, expires }),
        (room(), text(80)).prop_map(|(room, key)| ServerMsg::StreamKey { room, key }),
        (room(), any::<bool>(), prop::option::of(any::<u64>()), any::<u32>(), any::<bool>(), prop::option::of(peer()))
            .prop_map(|(room, live, since, viewers, recording, publisher)| ServerMsg::Broadcast {
                room,
                state: media::BroadcastState { live, since, viewers, recording, publisher },
            }),
        (error_code(), text(50), prop::option::of(room()), prop::option::of(msg_id()))
            .prop_map(|(code, message, room, id)| ServerMsg::Error { code, message, room, id }),
    ]
}

fn config() -> ProptestConfig {
    // Fewer cases in the browser, where each case is slower; no failure persistence files there.
    let cases = if cfg!(target_arch = "wasm32") { 64 } else { 256 };
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn run(test: impl Fn(&mut proptest::test_runner::TestRunner)) {
    let mut runner = proptest::test_runner::TestRunner::new(config());
    test(&mut runner);
}

macro_rules! both {
    ($name:ident, $body:block) => {
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    };
}

both!(client_messages_round_trip, {
    run(|r| {
        r.run(&client_msg(), |msg| {
            let text = encode(&msg);
            let back = decode_client(&text, usize::MAX).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(back, msg);
            Ok(())
        })
        .unwrap();
    })
});

both!(server_messages_round_trip, {
    run(|r| {
        r.run(&server_msg(), |msg| {
            let text = encode(&msg);
            let back = decode_server(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(back, msg);
            Ok(())
        })
        .unwrap();
    })
});

both!(spliced_frames_equal_serde_output, {
    run(|r| {
        r.run(&(room(), prop::collection::vec(room_message(), 0..5), any::<bool>()), |(room, messages, done)| {
            let raws: Vec<String> = messages.iter().map(encode_room_message).collect();
            let spliced = history_frame(&room, raws.iter().map(String::as_str), done);
            let typed = encode(&ServerMsg::History { room: room.clone(), messages: messages.clone(), done });
            prop_assert_eq!(spliced, typed);
            for (m, raw) in messages.into_iter().zip(&raws) {
                let spliced = message_frame(&room, raw);
                prop_assert_eq!(spliced, encode(&ServerMsg::Message { room: room.clone(), message: m }));
            }
            Ok(())
        })
        .unwrap();
    })
});

both!(arbitrary_bytes_never_panic, {
    run(|r| {
        r.run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_client(&text, 1 << 20);
            let _ = decode_server(&text);
            Ok(())
        })
        .unwrap();
    })
});

both!(mutated_valid_frames_never_panic, {
    // Arbitrary bytes are mostly not JSON; mutating real frames reaches the field validators.
    run(|r| {
        r.run(&(client_msg(), any::<prop::sample::Index>(), any::<char>()), |(msg, at, c)| {
            let mut chars: Vec<char> = encode(&msg).chars().collect();
            let i = at.index(chars.len());
            chars[i] = c;
            let text: String = chars.into_iter().collect();
            if let Err(e) = decode_client(&text, 1 << 20) {
                // Every failure maps to a stable code.
                prop_assert!(!e.code().as_str().is_empty());
            }
            Ok(())
        })
        .unwrap();
    })
});
