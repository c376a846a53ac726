//! A WHIP/WHEP client on str0m: posts its offer over HTTP, then sends or receives media on a
//! UDP socket of its own. `relaycast publish`, the media tests and the benchmark use it; it
//! speaks plain WHIP/WHEP over http or https, so it works against other servers too.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use super::tracks::{index_of, mid_of, Track};
use tokio::net::{TcpStream, UdpSocket};

/// Why a client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad server URL {0:?}: expected http(s)://host:port/<whip or whep>/<room>")]
    BadUrl(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("TLS with {0} failed: {1}")]
    Handshake(String, std::io::Error),
    #[error("cannot reach {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP failed: {0}")]
    Http(String),
    #[error("the server refused ({status}): {message}")]
    Refused { status: u16, code: Option<String>, message: String },
    #[error("the server's answer is not usable SDP: {0}")]
    BadAnswer(String),
    #[error("the media connection did not come up within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the media connection failed: {0}")]
    Rtc(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// A parsed `http(s)://host:port/path` URL, with the TLS settings for an https one.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// An `http://` or `https://` URL; https trusts the system's roots.
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        Self::parse_with(url, &crate::tls::ClientTrust::System)
    }

    /// [`Endpoint::parse`], trusting `trust` over https.
    pub fn parse_with(url: &str, trust: &crate::tls::ClientTrust) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let (tls, default_port) = match uri.scheme_str() {
            Some("http") => (None, 80),
            Some("https") => (Some(crate::tls::client_config(trust)?), 443),
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(default_port);
        let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        Ok(Endpoint { host, port, path, tls })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same server, another path (a session's `Location`).
    pub fn with_path(&self, path: &str) -> Endpoint {
        Endpoint { path: path.to_owned(), ..self.clone() }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn http_request(
    endpoint: &Endpoint,
    method: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<HttpReply, ClientError> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| ClientError::Connect(endpoint.authority(), e))?;
    let _ = tcp.set_nodelay(true);
    let http_err = |e: hyper::Error| ClientError::Http(e.to_string());
    let (mut sender, conn) = match &endpoint.tls {
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(http_err)?;
            (sender, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|_| ClientError::BadUrl(endpoint.authority()))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::Handshake(endpoint.authority(), e))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(http_err)?;
            (sender, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
    };
    let mut req =
        http::Request::builder().method(method).uri(endpoint.path.as_str()).header("host", endpoint.authority());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(body)).map_err(|e| ClientError::Http(e.to_string()))?;
    let res = sender.send_request(req).await.map_err(|e| ClientError::Http(e.to_string()))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
    conn.abort();
    Ok(HttpReply { status, headers, body })
}

/// The local address that reaches `server` (what to advertise as our candidate).
fn local_ip_toward(server: IpAddr) -> std::io::Result<IpAddr> {
    let unspecified: IpAddr = if server.is_ipv4() { [0, 0, 0, 0].into() } else { [0u16; 8].into() };
    let probe = std::net::UdpSocket::bind((unspecified, 0))?;
    probe.connect((server, 9))?;
    Ok(probe.local_addr()?.ip())
}

/// Something that happened on a client's connection.
#[derive(Debug)]
pub enum ClientEvent {
    Connected,
    /// A frame arrived (viewers).
    Media {
        kind: MediaKind,
        index: usize,
        keyframe: bool,
        data: Arc<[u8]>,
        time: MediaTime,
        contiguous: bool,
    },
    /// The server asks for a keyframe on this video track (publishers).
    KeyframeRequest {
        index: usize,
    },
    Disconnected,
}

/// A WHIP publisher or WHEP viewer.
#[derive(Debug)]
pub struct MediaClient {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    tracks: Vec<Track>,
    /// The session's URL, from `Location`.
    pub session: Endpoint,
    token: Option<String>,
    buf: Vec<u8>,
    pub connected: bool,
    /// The video codecs offered, in order of preference.
    video_codecs: Vec<Codec>,
}

impl MediaClient {
    /// Post an offer with `tracks` (sending for a publisher, receiving for a viewer) to `url`
    /// and set up the connection from the answer. Media flows once [`ClientEvent::Connected`].
    pub async fn start(
        url: &str,
        token: Option<&str>,
        publish: bool,
        tracks: &[MediaKind],
    ) -> Result<MediaClient, ClientError> {
        Self::start_with_codecs(url, token, publish, tracks, &[Codec::Vp8]).await
    }

    /// [`MediaClient::start`], offering these video codecs (VP8 and/or H.264) in this order.
    pub async fn start_with_codecs(
        url: &str,
        token: Option<&str>,
        publish: bool,
        tracks: &[MediaKind],
        video_codecs: &[Codec],
    ) -> Result<MediaClient, ClientError> {
        Self::start_at(Endpoint::parse(url)?, token, publish, tracks, video_codecs).await
    }

    /// [`MediaClient::start_with_codecs`] at a parsed endpoint (https with its own trust).
    pub async fn start_at(
        endpoint: Endpoint,
        token: Option<&str>,
        publish: bool,
        tracks: &[MediaKind],
        video_codecs: &[Codec],
    ) -> Result<MediaClient, ClientError> {
        let url = format!("{}{}", endpoint.authority(), endpoint.path);
        let server_ip = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| ClientError::Connect(endpoint.authority(), e))?
            .next()
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?
            .ip();
        let socket = UdpSocket::bind((local_ip_toward(server_ip)?, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(video_codecs.contains(&Codec::Vp8))
            .enable_h264(video_codecs.contains(&Codec::H264))
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| ClientError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let direction = if publish { Direction::SendOnly } else { Direction::RecvOnly };
        let mut change = rtc.sdp_api();
        let mut mids = Vec::new();
        for kind in tracks {
            mids.push(Track { mid: change.add_media(*kind, direction, None, None, None), kind: *kind });
        }
        let Some((offer, pending)): Option<(_, SdpPendingOffer)> = change.apply() else {
            return Err(ClientError::Rtc("nothing to offer".into()));
        };
        let reply =
            http_request(&endpoint, "POST", token, Some("application/sdp"), Bytes::from(offer.to_sdp_string())).await?;
        if reply.status != 201 {
            return Err(refused(&reply));
        }
        let location = reply
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::BadAnswer("201 without a Location".into()))?
            .to_owned();
        let answer_text = String::from_utf8_lossy(&reply.body).into_owned();
        let answer = SdpAnswer::from_sdp_string(&answer_text).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        rtc.sdp_api().accept_answer(pending, answer).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let session =
            if location.starts_with('/') { endpoint.with_path(&location) } else { Endpoint::parse(&location)? };
        Ok(MediaClient {
            rtc,
            socket,
            local,
            tracks: mids,
            session,
            token: token.map(str::to_owned),
            buf: vec![0; 2048],
            connected: false,
            video_codecs: video_codecs.to_vec(),
        })
    }

    /// Send one frame on the `index`th track of `kind` (publishers).
    pub fn write(&mut self, kind: MediaKind, index: usize, time: MediaTime, data: &[u8]) -> Result<(), ClientError> {
        let mid =
            mid_of(&self.tracks, kind, index).ok_or_else(|| ClientError::Rtc(format!("no {kind:?} track {index}")))?;
        let wanted: &[Codec] = if kind == MediaKind::Video { &self.video_codecs } else { &[Codec::Opus] };
        let writer = self.rtc.writer(mid).ok_or_else(|| ClientError::Rtc("the track is not negotiated".into()))?;
        let pt = wanted
            .iter()
            .find_map(|codec| writer.payload_params().find(|p| p.spec().codec == *codec).map(|p| p.pt()))
            .ok_or_else(|| ClientError::Rtc(format!("the server accepted none of {wanted:?}")))?;
        writer.write(pt, Instant::now(), time, data.to_vec()).map_err(|e| ClientError::Rtc(e.to_string()))
    }

    /// Drive the connection until `until`, handing each event to `on_event`.
    pub async fn pump(&mut self, until: Instant, mut on_event: impl FnMut(ClientEvent)) -> Result<(), ClientError> {
        loop {
            let timeout = loop {
                if !self.rtc.is_alive() {
                    on_event(ClientEvent::Disconnected);
                    return Err(ClientError::Rtc("the connection is closed".into()));
                }
                match self.rtc.poll_output().map_err(|e| ClientError::Rtc(e.to_string()))? {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Output::Event(event) => match event {
                        Event::Connected => {
                            self.connected = true;
                            on_event(ClientEvent::Connected);
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            on_event(ClientEvent::Disconnected);
                            return Err(ClientError::Rtc("disconnected".into()));
                        }
                        Event::MediaData(d) => {
                            if let Some((kind, index)) = index_of(&self.tracks, d.mid) {
                                on_event(ClientEvent::Media {
                                    kind,
                                    index,
                                    keyframe: d.is_keyframe(),
                                    data: d.data.clone(),
                                    time: d.time,
                                    contiguous: d.contiguous,
                                });
                            }
                        }
                        Event::KeyframeRequest(r) => {
                            if let Some((MediaKind::Video, index)) = index_of(&self.tracks, r.mid) {
                                on_event(ClientEvent::KeyframeRequest { index });
                            }
                        }
                        _ => {}
                    },
                }
            };
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let wake = timeout.min(until);
            tokio::select! {
                received = self.socket.recv_from(&mut self.buf) => {
                    let (n, source) = received?;
                    if let Ok(contents) = self.buf[..n].try_into() {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                        self.rtc.handle_input(input).map_err(|e| ClientError::Rtc(e.to_string()))?;
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| ClientError::Rtc(e.to_string()))?;
                }
            }
        }
    }

    /// Drive the connection until it is up.
    pub async fn wait_connected(&mut self, within: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + within;
        while !self.connected {
            if Instant::now() >= deadline {
                return Err(ClientError::ConnectTimeout(within));
            }
            self.pump((Instant::now() + Duration::from_millis(20)).min(deadline), |_| {}).await?;
        }
        Ok(())
    }

    /// End the session: `DELETE` on its URL.
    pub async fn close(mut self) -> Result<u16, ClientError> {
        self.rtc.disconnect();
        let reply = http_request(&self.session, "DELETE", self.token.as_deref(), None, Bytes::new()).await?;
        Ok(reply.status)
    }
}

fn refused(reply: &HttpReply) -> ClientError {
    ClientError::Refused {
        status: reply.status,
        code: reply.headers.get("relaycast-error").and_then(|v| v.to_str().ok()).map(str::to_owned),
        // Relaycast answers JSON `{code, message}`; other WHIP servers often plain text.
        message: serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).trim().to_owned()),
    }
}

/// What a synthetic publisher sends: VP8-shaped video at 30 fps and Opus-sized audio at 50
/// packets a second.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    pub video_frame_bytes: usize,
    pub audio_packet_bytes: usize,
    /// A keyframe every this many frames (besides the first and those asked for).
    pub keyframe_every: Option<u32>,
    pub width: u16,
    pub height: u16,
}

/// What a synthetic publisher has done so far.
#[derive(Debug, Default)]
pub struct SyntheticStats {
    pub keyframe_requests: std::sync::atomic::AtomicU64,
    /// Video frames sent (the next frame's number).
    pub video_frames: std::sync::atomic::AtomicU32,
}

impl MediaClient {
    /// Publish [`synthetic_vp8`] video and audio in real time until `stop`, answering each
    /// keyframe request with a keyframe. Ends early only if the connection fails.
    pub async fn publish_synthetic(
        &mut self,
        spec: Synthetic,
        stop: &std::sync::atomic::AtomicBool,
        stats: &SyntheticStats,
    ) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering;
        use str0m::media::Frequency;
        let start = Instant::now();
        let (mut video, mut audio) = (0u32, 0u32);
        let mut want_keyframe = true;
        let audio_packet = vec![0xfc; spec.audio_packet_bytes];
        while !stop.load(Ordering::Relaxed) {
            let next_video = start + Duration::from_micros(u64::from(video) * 33_333);
            let next_audio = start + Duration::from_millis(u64::from(audio) * 20);
            let due = next_video.min(next_audio);
            let mut asked = false;
            self.pump(due, |e| asked |= matches!(e, ClientEvent::KeyframeRequest { .. })).await?;
            if asked {
                stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                want_keyframe = true;
            }
            if due == next_video {
                let keyframe = want_keyframe || spec.keyframe_every.is_some_and(|n| video % n.max(1) == 0);
                want_keyframe = false;
                let frame = synthetic_vp8(video, keyframe, spec.video_frame_bytes, spec.width, spec.height);
                let time = MediaTime::new(u64::from(video) * 3000, Frequency::NINETY_KHZ);
                self.write(MediaKind::Video, 0, time, &frame)?;
                video += 1;
                stats.video_frames.store(video, Ordering::Relaxed);
            } else {
                let time = MediaTime::new(u64::from(audio) * 960, Frequency::FORTY_EIGHT_KHZ);
                self.write(MediaKind::Audio, 0, time, &audio_packet)?;
                audio += 1;
            }
        }
        Ok(())
    }
}

/// A synthetic VP8 frame of `size` bytes for tests and the benchmark: a keyframe carries a real
/// keyframe header (`width` x `height`), so the relay and the recorder treat it as one; the
/// frame number `n` follows the header, so a receiver can tell which frames it missed.
pub fn synthetic_vp8(n: u32, keyframe: bool, size: usize, width: u16, height: u16) -> Vec<u8> {
    let mut frame = if keyframe {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&width.to_le_bytes());
        f.extend_from_slice(&height.to_le_bytes());
        f
    } else {
        vec![0x11, 0x02, 0x00]
    };
    frame.extend_from_slice(&n.to_be_bytes());
    frame.resize(size.max(frame.len()), 0x5a);
    frame
}

/// The frame number of a [`synthetic_vp8`] frame.
pub fn synthetic_vp8_number(data: &[u8]) -> Option<u32> {
    let at = if data.first()? & 1 == 0 { 10 } else { 3 };
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}
