//! A node's listening side: one Redis pub/sub connection, subscribed to the rooms that have
//! members on this node (and to the node's own probe channel), rebuilt whenever it drops or
//! goes deaf.
//!
//! Deaf is the failure that bit Centrifugo and LiveKit alike: after a failover a pub/sub
//! connection can stay open and receive nothing while every health check is green. So the
//! subscriber publishes a probe to itself (over a separate command connection) every
//! `probe_interval`; when the probe has not come back within `probe_timeout`, the connection
//! is rebuilt. Whatever was published while it was down or deaf is gone from pub/sub: each
//! rebuild is reported as [`Event::Resync`], for the rooms to be checked against their logs.

use super::presence::{parse_announcement, Change};
use super::room_log::{parse_deletion, parse_publication, RoomKeys};
use futures_util::StreamExt;
use relaycast_shared::{Epoch, PeerId, RoomName};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How a typing notice starts on a room's channel (the peer id follows).
pub const TYPING_PREFIX: &str = "!t";

/// What the subscriber tells its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message published to a room this node listens to.
    Publication { room: RoomName, epoch: Epoch, json: String },
    /// A room's broadcast state changed (its media node said so): the state as JSON.
    Broadcast { room: RoomName, json: String },
    /// A message of a room this node listens to was deleted: its tombstone.
    Deleted { room: RoomName, json: String },
    /// Someone joined or left a room this node listens to (on any node).
    Presence { room: RoomName, change: Change },
    /// A member of a room this node listens to is typing (on any node).
    Typing { room: RoomName, peer_id: PeerId },
    /// Something another node sent to this one (signaling for a peer here).
    Direct { payload: String },
    /// Something a node said to every node (a removal).
    Control { payload: String },
    /// The subscription was rebuilt (Redis restarted, the connection dropped or went deaf):
    /// publications may have been missed; check every room's log for gaps.
    Resync,
}

/// Timing of the health probe and of reconnection.
#[derive(Debug, Clone, Copy)]
pub struct SubscriberConfig {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// The longest wait between reconnection attempts (they back off from 50 ms).
    pub max_backoff: Duration,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
        }
    }
}

enum Command {
    /// Subscribe; the sender hears once Redis confirmed it.
    Subscribe(RoomName, Option<oneshot::Sender<()>>),
    Unsubscribe(RoomName),
}

/// The node's handle: subscribe to and leave rooms. Dropping it stops the subscriber.
#[derive(Debug, Clone)]
pub struct Subscriber {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Subscribe(r, _) => write!(f, "subscribe {r}"),
            Command::Unsubscribe(r) => write!(f, "unsubscribe {r}"),
        }
    }
}

impl Subscriber {
    /// Start listening for node `node_id` on `client`'s Redis; events arrive on the receiver.
    pub fn start(
        client: redis::Client,
        node_id: &str,
        config: SubscriberConfig,
    ) -> (Subscriber, mpsc::UnboundedReceiver<Event>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let probe_channel = format!("rc:node:{{{node_id}}}:probe");
        tokio::spawn(run(client, probe_channel, super::peers::inbox(node_id), config, rx, events));
        (Subscriber { commands }, events_rx)
    }

    pub fn subscribe(&self, room: &RoomName) {
        let _ = self.commands.send(Command::Subscribe(room.clone(), None));
    }

    /// Subscribe to `room`; resolves once Redis confirmed it (from then on, every publication
    /// to the room reaches this node), or with an error when the subscriber is gone. While the
    /// connection is being rebuilt, it waits for the rebuild.
    pub async fn subscribed(&self, room: &RoomName) -> Result<(), oneshot::error::RecvError> {
        let (done, confirmed) = oneshot::channel();
        let _ = self.commands.send(Command::Subscribe(room.clone(), Some(done)));
        confirmed.await
    }

    pub fn unsubscribe(&self, room: &RoomName) {
        let _ = self.commands.send(Command::Unsubscribe(room.clone()));
    }
}

/// The room a channel belongs to: `rc:{<room>}:pub`.
fn room_of(channel: &str) -> Option<RoomName> {
    let inner = channel.strip_prefix("rc:{")?.strip_suffix("}:pub")?;
    RoomName::try_from(inner).ok()
}

/// Why a connection ended: the node dropped its handle (stop), or the connection is to be
/// rebuilt.
enum Ended {
    Stop,
    Rebuild(&'static str),
}

async fn run(
    client: redis::Client,
    probe_channel: String,
    inbox: String,
    config: SubscriberConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut rooms: BTreeSet<RoomName> = BTreeSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        let channels = Channels { probe: &probe_channel, inbox: &inbox };
        match listen(&client, channels, &config, &mut rooms, &mut commands, &events, first).await {
            Ok(Ended::Stop) => return,
            Ok(Ended::Rebuild(why)) => {
                tracing::warn!(why, "redis subscription lost; rebuilding it");
                backoff = Duration::from_millis(50);
            }
            Err(err) => {
                tracing::warn!(error = %err, "redis subscription failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
        first = false;
        if events.is_closed() {
            return;
        }
    }
}

/// The node's own channels.
#[derive(Clone, Copy)]
struct Channels<'a> {
    probe: &'a str,
    inbox: &'a str,
}

/// One pub/sub connection's life.
async fn listen(
    client: &redis::Client,
    Channels { probe: probe_channel, inbox }: Channels<'_>,
    config: &SubscriberConfig,
    rooms: &mut BTreeSet<RoomName>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    events: &mpsc::UnboundedSender<Event>,
    first: bool,
) -> redis::RedisResult<Ended> {
    let pubsub = client.get_async_pubsub().await?;
    let (mut sink, mut stream) = pubsub.split();
    let mut prober = client.get_multiplexed_async_connection().await?;
    sink.subscribe(probe_channel).await?;
    sink.subscribe(inbox).await?;
    sink.subscribe(super::peers::CONTROL).await?;
    for room in rooms.iter() {
        sink.subscribe(RoomKeys::of(room).channel).await?;
    }
    if !first {
        let _ = events.send(Event::Resync);
    }
    let mut next_probe = Instant::now() + config.probe_interval;
    let mut awaiting: Option<(u64, Instant)> = None;
    let mut probe_id = 0u64;
    loop {
        let deadline = awaiting.map_or(next_probe, |(_, by)| by.min(next_probe));
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return Ok(Ended::Rebuild("the pub/sub connection closed")) };
                let channel = message.get_channel_name();
                let Ok(payload) = message.get_payload::<String>() else { continue };
                if channel == probe_channel {
                    if awaiting.is_some_and(|(id, _)| payload == id.to_string()) {
                        awaiting = None;
                    }
                    continue;
                }
                if channel == inbox || channel == super::peers::CONTROL {
                    let event = if channel == inbox { Event::Direct { payload } } else { Event::Control { payload } };
                    if events.send(event).is_err() {
                        return Ok(Ended::Stop);
                    }
                    continue;
                }
                let Some(room) = room_of(channel) else { continue };
                let event = match (parse_announcement(&payload), parse_publication(&payload)) {
                    _ if payload.starts_with("!b") => Event::Broadcast { room, json: payload[2..].to_owned() },
                    _ if payload.starts_with(TYPING_PREFIX) => match PeerId::try_from(&payload[TYPING_PREFIX.len()..]) {
                        Ok(peer_id) => Event::Typing { room, peer_id },
                        Err(_) => {
                            tracing::warn!(channel, "a typing notice without a valid peer id; ignored");
                            continue;
                        }
                    },
                    _ if parse_deletion(&payload).is_some() => {
                        Event::Deleted { room, json: parse_deletion(&payload).unwrap_or_default().to_owned() }
                    }
                    (Some(change), _) => Event::Presence { room, change },
                    (None, Some((epoch, json))) => Event::Publication { room, epoch, json: json.to_owned() },
                    (None, None) => {
                        tracing::warn!(channel, "a publication that is neither a message nor presence; ignored");
                        continue;
                    }
                };
                if events.send(event).is_err() {
                    return Ok(Ended::Stop);
                }
            }
            command = commands.recv() => match command {
                None => return Ok(Ended::Stop),
                Some(Command::Subscribe(room, done)) => {
                    if rooms.insert(room.clone()) {
                        if let Err(err) = sink.subscribe(RoomKeys::of(&room).channel).await {
                            // Kept in `rooms`: the rebuild subscribes it, and its confirmation
                            // waits (the command is not lost with the connection).
                            drop(done);
                            return Err(err);
                        }
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Some(Command::Unsubscribe(room)) => {
                    if rooms.remove(&room) {
                        sink.unsubscribe(RoomKeys::of(&room).channel).await?;
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if let Some((_, by)) = awaiting {
                    if now >= by {
                        return Ok(Ended::Rebuild("the probe did not come back: the connection is deaf"));
                    }
                }
                if now >= next_probe {
                    probe_id += 1;
                    awaiting.get_or_insert((probe_id, now + config.probe_timeout));
                    let id = awaiting.map_or(probe_id, |(id, _)| id);
                    // A probe that cannot even be sent is a failure of its own: rebuild.
                    let sent: redis::RedisResult<()> = tokio::time::timeout(
                        config.probe_timeout,
                        redis::cmd("PUBLISH").arg(probe_channel).arg(id.to_string()).query_async(&mut prober),
                    )
                    .await
                    .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "probe publish timed out"))));
                    if sent.is_err() {
                        return Ok(Ended::Rebuild("the probe could not be published"));
                    }
                    next_probe = now + config.probe_interval;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_rooms() {
        assert_eq!(room_of("rc:{standup}:pub").map(|r| r.to_string()), Some("standup".into()));
        assert_eq!(room_of("rc:{bad room}:pub"), None);
        assert_eq!(room_of("rc:node:{n1}:probe"), None);
    }
}
