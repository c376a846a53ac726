//! The pure parts of a call: the perfect-negotiation decisions for one remote peer, and the
//! arithmetic behind the call-quality panel. The WebRTC glue in `crate::net::call` asks these
//! what to do; they are tested natively.

use relaycast_shared::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// People in one call at most: a mesh sends every stream to every peer, so each one more
/// costs everyone an upload.
pub const MAX_IN_CALL: usize = 6;

/// Whether we may join a call that `others_in_call` people are already in.
pub fn may_join(others_in_call: usize) -> bool {
    others_in_call < MAX_IN_CALL
}

/// Which side yields on glare. Both peers compute the same answer from their ids, so exactly
/// one of them is polite.
pub fn is_polite(me: &PeerId, them: &PeerId) -> bool {
    me.as_str() > them.as_str()
}

/// Perfect negotiation state for one remote peer (the W3C pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    pub polite: bool,
    /// We are between createOffer and setLocalDescription's completion.
    pub making_offer: bool,
    /// The last offer was ignored (impolite side, glare): its candidates may fail to apply.
    pub ignore_offer: bool,
    /// A remote description has been applied on this link.
    pub heard_remote: bool,
}

/// What to do with a description from the remote peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDescription {
    /// Impolite side in a glare: drop it, our offer wins.
    Ignore,
    /// Apply it (the browser rolls back our own offer if we were polite and had one), and
    /// answer if it was an offer.
    Apply { answer: bool },
}

/// How long the polite side waits before its first offer on a new link (see
/// [`Negotiation::defer_first_offer`]).
pub const POLITE_FIRST_OFFER_DELAY_MS: u32 = 800;

impl Negotiation {
    pub fn new(polite: bool) -> Self {
        Self { polite, making_offer: false, ignore_offer: false, heard_remote: false }
    }

    /// Whether to hold our first offer back a moment. When both peers start a call at once,
    /// both offer and the polite one rolls its offer back; Chromium then sometimes never gathers
    /// a candidate again on that connection, not even after an ICE restart (seen in this repo's
    /// TURN journey, about one run in eight), and the call never connects. So on a new link the
    /// polite side waits [`POLITE_FIRST_OFFER_DELAY_MS`]: if the other side's offer comes in,
    /// answering it carries our tracks too and no glare happens; if not, we offer.
    pub fn defer_first_offer(&self) -> bool {
        self.polite && !self.heard_remote
    }

    /// `stable`: our signaling state is "stable".
    pub fn on_description(&mut self, is_offer: bool, stable: bool) -> OnDescription {
        let collision = is_offer && (self.making_offer || !stable);
        self.ignore_offer = !self.polite && collision;
        if self.ignore_offer {
            OnDescription::Ignore
        } else {
            self.heard_remote = true;
            OnDescription::Apply { answer: is_offer }
        }
    }

    /// A candidate failed to apply: an error worth reporting only if we did not ignore the
    /// offer it belonged to.
    pub fn candidate_error_matters(&self) -> bool {
        !self.ignore_offer
    }
}

/// Counters read from `getStats()` at one moment, for one remote peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub at_ms: f64,
    pub bytes_received: f64,
    pub bytes_sent: f64,
    pub packets_received: f64,
    pub packets_lost: f64,
    pub frames_decoded: f64,
    pub audio_packets_received: f64,
    /// Seconds, from the nominated candidate pair.
    pub rtt: Option<f64>,
}

/// Level above which a peer counts as speaking: about -34 dBov, above room noise and
/// comfort noise, below any voice close to a microphone.
pub const SPEAKING_LEVEL: f64 = 0.02;

/// How long a peer still counts as speaking after its level fell: the pauses between words
/// do not make its ring flicker.
pub const SPEAKING_HOLD_MS: f64 = 700.0;

/// How often the audio levels are read for the speaking rings (the quality statistics are
/// read once a second, too slow for a ring that should follow the voice).
pub const VOICE_POLL_MS: u64 = 200;

/// Whether a peer is speaking, from its audio level read every [`VOICE_POLL_MS`]: on as
/// soon as the level rises above [`SPEAKING_LEVEL`], off after [`SPEAKING_HOLD_MS`] of quiet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Voice {
    loud_at: Option<f64>,
}

impl Voice {
    /// The level (0 to 1) read at `now_ms`.
    pub fn hear(&mut self, level: f64, now_ms: f64) {
        if level > SPEAKING_LEVEL {
            self.loud_at = Some(now_ms);
        }
    }

    pub fn speaking(&self, now_ms: f64) -> bool {
        self.loud_at.is_some_and(|at| now_ms - at < SPEAKING_HOLD_MS)
    }
}

/// A connection's quality in a word, for the icon on a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    /// Nothing measured yet.
    Unknown,
    Good,
    Fair,
    Poor,
}

impl Rating {
    pub fn label(self) -> &'static str {
        match self {
            Rating::Unknown => "connection: measuring",
            Rating::Good => "connection: good",
            Rating::Fair => "connection: fair",
            Rating::Poor => "connection: poor",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Rating::Unknown => "unknown",
            Rating::Good => "good",
            Rating::Fair => "fair",
            Rating::Poor => "poor",
        }
    }

    /// Bars lit out of three.
    pub fn bars(self) -> u8 {
        match self {
            Rating::Unknown => 0,
            Rating::Good => 3,
            Rating::Fair => 2,
            Rating::Poor => 1,
        }
    }
}

/// The worst of the last few seconds: loss hurts a call more than delay, so 2% loss or
/// 300 ms of round trip make it fair, 8% or 600 ms poor (the thresholds where speech starts
/// to break up and people talk over each other).
pub fn rating(points: &VecDeque<Point>) -> Rating {
    let recent: Vec<&Point> = points.iter().rev().take(3).collect();
    if recent.is_empty() {
        return Rating::Unknown;
    }
    let loss = recent.iter().map(|p| p.loss_pct).fold(0.0, f64::max);
    let rtt = recent.iter().map(|p| p.rtt_ms).fold(0.0, f64::max);
    if loss >= 8.0 || rtt >= 600.0 {
        Rating::Poor
    } else if loss >= 2.0 || rtt >= 300.0 {
        Rating::Fair
    } else {
        Rating::Good
    }
}

/// Columns of the call grid for `tiles` tiles: one for one, side by side for two, two by
/// two up to four, three across up to six (the call's limit).
pub fn grid_columns(tiles: usize) -> usize {
    match tiles {
        0 | 1 => 1,
        2..=4 => 2,
        _ => 3,
    }
}

/// One point of the quality charts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    pub kbps_in: f64,
    pub kbps_out: f64,
    pub rtt_ms: f64,
    /// Packets lost over packets expected in the interval, in percent.
    pub loss_pct: f64,
}

/// A point from two consecutive samples (counters only grow; a reset reads as zero).
pub fn point(prev: &Sample, next: &Sample) -> Point {
    let secs = ((next.at_ms - prev.at_ms) / 1000.0).max(1e-3);
    let d = |a: f64, b: f64| (b - a).max(0.0);
    let received = d(prev.packets_received, next.packets_received);
    let lost = d(prev.packets_lost, next.packets_lost);
    Point {
        kbps_in: d(prev.bytes_received, next.bytes_received) * 8.0 / 1000.0 / secs,
        kbps_out: d(prev.bytes_sent, next.bytes_sent) * 8.0 / 1000.0 / secs,
        rtt_ms: next.rtt.unwrap_or(0.0) * 1000.0,
        loss_pct: if received + lost > 0.0 { lost * 100.0 / (received + lost) } else { 0.0 },
    }
}

/// The last [`HISTORY`] points of a peer, for the live charts.
pub const HISTORY: usize = 30;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub last: Option<Sample>,
    pub points: VecDeque<Point>,
}

impl Series {
    pub fn push(&mut self, sample: Sample) {
        if let Some(prev) = &self.last {
            self.points.push_back(point(prev, &sample));
            while self.points.len() > HISTORY {
                self.points.pop_front();
            }
        }
        self.last = Some(sample);
    }
}

/// SVG polyline points for `values` in a `w` x `h` box, scaled to the largest value.
pub fn sparkline(values: &[f64], w: f64, h: f64) -> String {
    let max = values.iter().cloned().fold(0.0_f64, f64::max).max(1e-9);
    let step = if values.len() > 1 { w / (values.len() - 1) as f64 } else { 0.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, h - (v / max) * h))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the person chose to have large on the stage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PinChoice {
    /// Nothing chosen: a screen someone shares goes large by itself.
    #[default]
    Auto,
    /// This tile.
    Tile(String),
    /// Every tile the same size.
    Grid,
}

/// The tile shown large: the pinned one while it is there, else (unless the grid was
/// chosen) a shared screen.
pub fn staged(choice: &PinChoice, present: &[String], sharing: Option<&str>) -> Option<String> {
    match choice {
        PinChoice::Tile(k) if present.contains(k) => Some(k.clone()),
        PinChoice::Grid => None,
        _ => sharing.filter(|k| present.iter().any(|p| p == k)).map(str::to_owned),
    }
}

/// The choice after a click on `key`'s pin: unpinning the tile that is large (pinned or
/// staged by itself) goes back to the grid.
pub fn pin_clicked(staged: Option<&str>, key: &str) -> PinChoice {
    if staged == Some(key) {
        PinChoice::Grid
    } else {
        PinChoice::Tile(key.to_owned())
    }
}

/// What peers say to each other on their direct data channel (JSON, one per message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerMsg {
    /// A direct message, person to person.
    Text { text: String },
    /// The sender's microphone and camera are on or off, and whether it shares its screen
    /// (sent on joining the call, on every change and when the channel opens): the icons on
    /// its tile, and a shared screen goes on the stage large.
    Media {
        mic: bool,
        camera: bool,
        #[serde(default)]
        screen: bool,
    },
}

impl PeerMsg {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A message from a peer; anything else (another version, garbage) is none.
    pub fn decode(text: &str) -> Option<PeerMsg> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> PeerId {
        PeerId::try_from(s).unwrap()
    }

    #[test]
    fn calls_hold_six() {
        assert!(may_join(0));
        assert!(may_join(5), "the sixth may join");
        assert!(!may_join(6), "a seventh may not");
    }

    #[test]
    fn exactly_one_side_is_polite() {
        let (a, b) = (peer("aaa"), peer("bbb"));
        assert_ne!(is_polite(&a, &b), is_polite(&b, &a));
    }

    #[test]
    fn glare_impolite_ignores_polite_yields() {
        let mut impolite = Negotiation::new(false);
        impolite.making_offer = true;
        assert_eq!(impolite.on_description(true, false), OnDescription::Ignore);
        assert!(!impolite.candidate_error_matters());
        let mut polite = Negotiation::new(true);
        polite.making_offer = true;
        assert_eq!(polite.on_description(true, false), OnDescription::Apply { answer: true });
        assert!(polite.candidate_error_matters());
    }

    #[test]
    fn only_the_polite_side_defers_and_only_until_it_hears_from_the_other() {
        assert!(!Negotiation::new(false).defer_first_offer());
        let mut polite = Negotiation::new(true);
        assert!(polite.defer_first_offer());
        polite.on_description(true, true);
        assert!(!polite.defer_first_offer(), "after the first exchange, normal rules");
    }

    #[test]
    fn no_glare_offers_are_answered_and_answers_applied() {
        let mut n = Negotiation::new(false);
        assert_eq!(n.on_description(true, true), OnDescription::Apply { answer: true });
        assert_eq!(n.on_description(false, false), OnDescription::Apply { answer: false });
        assert!(!n.ignore_offer);
    }

    #[test]
    fn points_from_counter_deltas() {
        let a =
            Sample { at_ms: 0.0, bytes_received: 0.0, packets_received: 90.0, packets_lost: 0.0, ..Sample::default() };
        let b = Sample {
            at_ms: 1000.0,
            bytes_received: 125_000.0,
            bytes_sent: 62_500.0,
            packets_received: 180.0,
            packets_lost: 10.0,
            rtt: Some(0.025),
            ..Sample::default()
        };
        let p = point(&a, &b);
        assert_eq!(p.kbps_in, 1000.0);
        assert_eq!(p.kbps_out, 500.0);
        assert_eq!(p.rtt_ms, 25.0);
        assert_eq!(p.loss_pct, 10.0);
        // A counter that went backwards (a new connection) reads as zero, not negative.
        assert_eq!(point(&b, &a).kbps_in, 0.0);
    }

    #[test]
    fn series_keeps_a_bounded_window() {
        let mut s = Series::default();
        for i in 0..50 {
            s.push(Sample { at_ms: i as f64 * 1000.0, bytes_received: i as f64 * 1000.0, ..Sample::default() });
        }
        assert_eq!(s.points.len(), HISTORY);
        assert_eq!(sparkline(&[0.0, 1.0], 10.0, 10.0), "0.0,10.0 10.0,0.0");
    }

    #[test]
    fn speaking_starts_with_the_voice_and_outlasts_the_pauses_between_words() {
        let mut v = Voice::default();
        assert!(!v.speaking(0.0));
        v.hear(0.001, 0.0);
        assert!(!v.speaking(0.0), "comfort noise");
        v.hear(0.2, 200.0);
        assert!(v.speaking(200.0), "at once");
        v.hear(0.0, 400.0);
        assert!(v.speaking(400.0), "a pause between words");
        v.hear(0.0, 900.0);
        assert!(!v.speaking(900.0), "quiet for the hold time");
        v.hear(0.5, 1000.0);
        assert!(v.speaking(1000.0));
    }

    #[test]
    fn quality_is_the_worst_of_the_last_seconds() {
        let p = |loss_pct: f64, rtt_ms: f64| Point { loss_pct, rtt_ms, ..Point::default() };
        assert_eq!(rating(&VecDeque::new()), Rating::Unknown);
        assert_eq!(rating(&[p(0.0, 20.0), p(0.5, 40.0)].into()), Rating::Good);
        assert_eq!(rating(&[p(3.0, 20.0), p(0.0, 20.0)].into()), Rating::Fair, "a lossy second counts");
        assert_eq!(rating(&[p(0.0, 700.0)].into()), Rating::Poor);
        assert_eq!(
            rating(&[p(20.0, 0.0), p(0.0, 0.0), p(0.0, 0.0), p(0.0, 0.0)].into()),
            Rating::Good,
            "old loss is forgotten"
        );
        assert!(Rating::Good.bars() > Rating::Fair.bars() && Rating::Fair.bars() > Rating::Poor.bars());
    }

    #[test]
    fn the_grid_stays_near_square() {
        let cols: Vec<usize> = (1..=6).map(grid_columns).collect();
        assert_eq!(cols, vec![1, 2, 2, 2, 3, 3]);
    }

    #[test]
    fn peer_messages_round_trip_and_garbage_is_ignored() {
        for m in
            [PeerMsg::Text { text: "hi {\"json\"}".into() }, PeerMsg::Media { mic: false, camera: true, screen: true }]
        {
            assert_eq!(PeerMsg::decode(&m.encode()), Some(m));
        }
        assert_eq!(PeerMsg::decode("plain text from an old app"), None);
        assert_eq!(PeerMsg::decode(r#"{"type":"unknown"}"#), None);
        assert_eq!(
            PeerMsg::decode(r#"{"type":"media","mic":true,"camera":false}"#),
            Some(PeerMsg::Media { mic: true, camera: false, screen: false }),
            "screen is optional"
        );
    }

    #[test]
    fn a_shared_screen_goes_large_unless_something_else_was_chosen() {
        let present = vec!["you".to_owned(), "ada".to_owned(), "bo".to_owned()];
        assert_eq!(staged(&PinChoice::Auto, &present, None), None, "nothing shared: the grid");
        assert_eq!(staged(&PinChoice::Auto, &present, Some("ada")).as_deref(), Some("ada"));
        let choice = pin_clicked(Some("ada"), "ada");
        assert_eq!(choice, PinChoice::Grid, "unpinning the shared screen");
        assert_eq!(staged(&choice, &present, Some("ada")), None);
        let choice = pin_clicked(None, "bo");
        assert_eq!(staged(&choice, &present, Some("ada")).as_deref(), Some("bo"), "a pinned tile wins");
        assert_eq!(staged(&choice, &["you".to_owned()], Some("ada")), None, "a pinned tile that left: back to auto");
    }
}
