//! Token mode over real sockets: tokens minted by other languages' JWT libraries (PyJWT from
//! PyPI, `jose` from npm, as an app's backend would) are accepted, bad ones refused with
//! stable codes; rights reach the HTTP side (files, going live, watching, recording).
//! Needs `python3 -c 'import jwt'` and `e2e/node_modules/jose` (`scripts/dev setup`).

mod common;

use common::*;
use relaycast_shared::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A token minted by an outside program: `python3 mint_pyjwt.py` or `node mint-jose.mjs`.
fn mint_with(tool: &str, alg: &str, key: &str, kid: &str, claims: &serde_json::Value) -> String {
    let tools = root().join("e2e/tools");
    let mut command = match tool {
        "pyjwt" => {
            let mut c = std::process::Command::new("python3");
            c.arg(tools.join("mint_pyjwt.py"));
            c
        }
        _ => {
            let mut c = std::process::Command::new("node");
            c.arg(tools.join("mint-jose.mjs"));
            c
        }
    };
    let out = command.args([alg, key, kid, &claims.to_string()]).output().expect("python3 and node run");
    assert!(
        out.status.success(),
        "{tool} could not mint (run scripts/dev setup for PyJWT and jose): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn claims(sub: &str, rooms: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"sub": sub, "name": format!("{sub} from the app"), "aud": "relaycast",
        "iat": now_secs(), "exp": now_secs() + 600, "rooms": rooms})
}

#[tokio::test]
async fn tokens_minted_by_pyjwt_and_jose_are_accepted_and_bad_ones_refused() {
    let keys = Keys::new();
    let server = token_server(&keys).await;
    let rooms = serde_json::json!({"standup": ["join", "history", "publish"]});
    for tool in ["pyjwt", "jose"] {
        for (alg, key, kid) in [("EdDSA", keys.path("ed.pem"), "ed-1"), ("HS256", keys.path("secret"), "hs-1")] {
            let sub = format!("{tool}-{alg}");
            let token = mint_with(tool, alg, &key, kid, &claims(&sub, rooms.clone()));
            let (mut ws, welcome) = hello(&server, &token).await.unwrap_or_else(|e| panic!("{tool} {alg}: {e:?}"));
            let ServerMsg::Welcome { user: Some(user), .. } = welcome else { panic!("{welcome:?}") };
            assert_eq!((user.id.as_str(), user.name.as_str()), (sub.as_str(), format!("{sub} from the app").as_str()));
            let joined = join_on(&mut ws, "standup").await;
            let rights = joined.iter().find_map(|m| match m {
                ServerMsg::Joined { rights, .. } => Some(*rights),
                _ => None,
            });
            assert_eq!(rights, Some(Rights::parse_list("join,history,publish").unwrap()), "{tool} {alg}: {joined:?}");
            // A room the token does not name is refused with a stable code.
            assert_eq!(error_codes(&join_on(&mut ws, "elsewhere").await), vec![ErrorCode::Forbidden]);
        }

        // Tampered: the payload of a genuine token changed (a room added).
        let genuine = mint_with(tool, "EdDSA", &keys.path("ed.pem"), "ed-1", &claims("t", rooms.clone()));
        let parts: Vec<&str> = genuine.split('.').collect();
        let forged_claims = claims("t", serde_json::json!({"standup": ["join"], "admin": ["join", "moderate"]}));
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tampered = format!("{}.{}.{}", parts[0], b64.encode(forged_claims.to_string()), parts[2]);
        let mut expired = claims("t", rooms.clone());
        expired["exp"] = serde_json::json!(now_secs() - 3600);
        let mut wrong_audience = claims("t", rooms.clone());
        wrong_audience["aud"] = serde_json::json!("another-service");
        let cases = [
            ("tampered", tampered),
            ("expired", mint_with(tool, "EdDSA", &keys.path("ed.pem"), "ed-1", &expired)),
            ("wrong audience", mint_with(tool, "HS256", &keys.path("secret"), "hs-1", &wrong_audience)),
            ("wrong key", mint_with(tool, "EdDSA", &keys.path("other.pem"), "ed-1", &claims("t", rooms.clone()))),
            ("unknown kid", mint_with(tool, "EdDSA", &keys.path("ed.pem"), "ed-9", &claims("t", rooms.clone()))),
            ("no kid", mint_with(tool, "EdDSA", &keys.path("ed.pem"), "-", &claims("t", rooms.clone()))),
        ];
        for (what, token) in cases {
            let refused = hello(&server, &token).await.err();
            let want = if what == "expired" { ErrorCode::TokenExpired } else { ErrorCode::Unauthorized };
            assert_eq!(refused, Some((want, 1008)), "{tool}: a {what} token");
        }
    }
    // No token at all.
    let mut ws = raw_connect(&server).await;
    send_on(&mut ws, &ClientMsg::hello()).await;
    assert!(matches!(recv_on(&mut ws).await, ServerMsg::Error { code: ErrorCode::Unauthorized, .. }));
    server.stop().await;
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let reply =
        request(server.addr, method, path, &[("authorization", &auth), ("content-type", content_type)], body).await;
    (reply.status, reply.headers.get("relaycast-error").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default())
}

#[tokio::test]
async fn files_broadcasts_and_recordings_follow_the_holders_rights() {
    let keys = Keys::new();
    let server = token_server(&keys).await;
    let bytes = b"rights decide who uploads";
    let path = format!("/api/rooms/stage/blobs/{}?name=a.txt", sha256_hex(bytes));
    let (_reader, reader_grant, reader_key) = member(&server, &keys, "reader", "stage", "join,download").await;
    assert!(reader_key.is_none(), "no stream key without broadcast or record");
    assert_eq!(call(&server, "PUT", &path, &reader_grant, "text/plain", bytes).await, (403, "forbidden".into()));
    let (_writer, writer_grant, _) = member(&server, &keys, "writer", "stage", "join,upload").await;
    assert_eq!(call(&server, "PUT", &path, &writer_grant, "text/plain", bytes).await.0, 201);
    assert_eq!(
        call(&server, "GET", &path, &writer_grant, "", b"").await,
        (403, "forbidden".into()),
        "no download right"
    );
    assert_eq!(call(&server, "GET", &path, &reader_grant, "", b"").await.0, 200);

    // Going live needs the broadcast right (and a stream key); watching the watch right;
    // recording the record right.
    let (_host, host_grant, host_key) = member(&server, &keys, "host", "stage", "join,broadcast,watch").await;
    let host_key = host_key.expect("a stream key for the broadcast right");
    let sdp = "v=0\r\n";
    assert_eq!(
        call(&server, "POST", "/whip/stage", &host_grant, "application/sdp", sdp.as_bytes()).await.1,
        "access_denied"
    );
    let (status, code) = call(&server, "POST", "/whip/stage", &host_key, "application/sdp", sdp.as_bytes()).await;
    assert_eq!((status, code.as_str()), (400, "malformed_sdp"), "authorized, then the offer is read");
    assert_eq!(
        call(&server, "POST", "/whep/stage", &reader_grant, "application/sdp", sdp.as_bytes()).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        call(&server, "POST", "/whep/stage", &host_grant, "application/sdp", sdp.as_bytes()).await.1,
        "malformed_sdp"
    );
    assert_eq!(
        call(&server, "POST", "/api/rooms/stage/recording", &host_key, "application/json", b"").await,
        (403, "forbidden".into())
    );
    let (_rec, _, rec_key) = member(&server, &keys, "recorder", "stage", "join,record").await;
    let (_, code) =
        call(&server, "POST", "/api/rooms/stage/recording", &rec_key.unwrap(), "application/json", b"").await;
    assert_eq!(code, "not_live", "authorized to record; nothing live yet");
    server.stop().await;
}
