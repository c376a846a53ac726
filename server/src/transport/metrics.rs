//! `GET /metrics`: Prometheus text exposition.

use crate::blobs::BlobCache;
use crate::hub::Hub;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub fn render(
    hub: &Hub,
    admission: &super::Admission,
    cache: Option<&BlobCache>,
    media: Option<&crate::media::Relay>,
) -> String {
    let (stats, connections, rooms, (history_messages, history_bytes), unpersisted) = hub
        .with_engine(|e| (e.stats().clone(), e.connection_count(), e.room_count(), e.history_size(), e.unpersisted()));
    let c = &hub.counters;
    let rows: [(&str, &str, &str, u64); 18] = [
        ("relaycast_connections", "gauge", "Open WebSocket connections.", connections as u64),
        (
            "relaycast_tcp_connections",
            "gauge",
            "Open TCP connections (HTTP and WebSocket), counted against --max-connections.",
            admission.open() as u64,
        ),
        (
            "relaycast_connections_refused_total",
            "counter",
            "Connections turned away by the connection limits.",
            admission.refused(),
        ),
        (
            "relaycast_hello_timeouts_total",
            "counter",
            "WebSockets closed for not saying hello in time.",
            stats.hello_timeouts,
        ),
        (
            "relaycast_connections_total",
            "counter",
            "WebSocket connections accepted.",
            c.connections_total.load(Ordering::Relaxed),
        ),
        ("relaycast_rooms", "gauge", "Rooms held (with members or history).", rooms as u64),
        ("relaycast_messages_in_total", "counter", "Frames received from clients.", stats.messages_in),
        ("relaycast_messages_published_total", "counter", "Room messages accepted.", stats.messages_published),
        (
            "relaycast_messages_out_total",
            "counter",
            "Frames queued to clients.",
            c.frames_queued.load(Ordering::Relaxed),
        ),
        ("relaycast_history_messages", "gauge", "Messages cached in room histories.", history_messages as u64),
        ("relaycast_history_bytes", "gauge", "Bytes cached in room histories.", history_bytes as u64),
        ("relaycast_unpersisted_messages", "gauge", "Messages accepted and not yet durable.", unpersisted as u64),
        (
            "relaycast_dropped_slow_clients_total",
            "counter",
            "Connections dropped for reading too slowly.",
            stats.dropped_slow_clients,
        ),
        ("relaycast_rate_limited_total", "counter", "Messages refused by the rate limit.", stats.rate_limited),
        ("relaycast_errors_sent_total", "counter", "Error frames sent to clients.", stats.errors_sent),
        (
            "relaycast_store_batches_total",
            "counter",
            "Batches made durable by the store.",
            c.store_batches.load(Ordering::Relaxed),
        ),
        (
            "relaycast_store_errors_total",
            "counter",
            "Failed store writes (retried).",
            c.store_errors.load(Ordering::Relaxed),
        ),
        (
            "relaycast_ready",
            "gauge",
            "1 when the server accepts traffic and its store is healthy.",
            u64::from(hub.is_ready()),
        ),
    ];
    let blobs = cache.map(|c| c.stats()).unwrap_or_default();
    let blob_rows: [(&str, &str, &str, u64); 3] = [
        ("relaycast_blobs", "gauge", "Files in the blob cache.", blobs.blobs as u64),
        ("relaycast_blob_bytes", "gauge", "Bytes of files in the blob cache.", blobs.bytes),
        ("relaycast_blob_uploads", "gauge", "Uploads in progress.", blobs.uploads as u64),
    ];
    let media_rows: Vec<(&str, &str, &str, u64)> = match media {
        None => Vec::new(),
        Some(relay) => {
            let m = &relay.counters;
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            vec![
                (
                    "relaycast_media_sessions",
                    "gauge",
                    "Live media sessions (publishers and viewers).",
                    m.sessions.load(Ordering::Relaxed) as u64,
                ),
                (
                    "relaycast_media_tasks",
                    "gauge",
                    "Running media session and recorder tasks.",
                    m.tasks.load(Ordering::Relaxed) as u64,
                ),
                (
                    "relaycast_media_routes",
                    "gauge",
                    "Entries in the media socket's routing table.",
                    relay.route_count() as u64,
                ),
                (
                    "relaycast_media_rooms",
                    "gauge",
                    "Rooms with a publisher, viewers or a recording.",
                    relay.room_count() as u64,
                ),
                ("relaycast_media_sessions_total", "counter", "Media sessions opened.", get(&m.sessions_total)),
                (
                    "relaycast_media_frames_forwarded_total",
                    "counter",
                    "Frames queued to viewers and recorders.",
                    get(&m.frames_forwarded),
                ),
                (
                    "relaycast_media_frames_dropped_total",
                    "counter",
                    "Frames dropped by full viewer queues.",
                    get(&m.frames_dropped),
                ),
                (
                    "relaycast_media_keyframe_requests_total",
                    "counter",
                    "Keyframe requests sent to publishers.",
                    get(&m.keyframe_requests),
                ),
                (
                    "relaycast_media_keyframe_requests_coalesced_total",
                    "counter",
                    "Keyframe requests folded into another by the rate limit.",
                    get(&m.keyframe_requests_coalesced),
                ),
                (
                    "relaycast_media_datagrams_in_total",
                    "counter",
                    "Datagrams received on the media port.",
                    get(&m.datagrams_in),
                ),
                (
                    "relaycast_media_datagrams_out_total",
                    "counter",
                    "Datagrams sent from the media port.",
                    get(&m.datagrams_out),
                ),
                ("relaycast_media_bytes_out_total", "counter", "Bytes sent from the media port.", get(&m.bytes_out)),
                (
                    "relaycast_media_datagrams_unrouted_total",
                    "counter",
                    "Datagrams no session claimed (dropped).",
                    get(&m.datagrams_unrouted),
                ),
                (
                    "relaycast_media_datagrams_dropped_total",
                    "counter",
                    "Datagrams dropped by a full session queue.",
                    get(&m.datagrams_dropped),
                ),
            ]
        }
    };
    let cluster_rows: Vec<(&str, &str, &str, u64)> = match hub.cluster() {
        None => Vec::new(),
        Some(node) => {
            let n = &node.counters;
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            vec![
                (
                    "relaycast_cluster_redis_up",
                    "gauge",
                    "1 when Redis answered the node's latest heartbeat.",
                    u64::from(node.is_healthy()),
                ),
                ("relaycast_cluster_appends_total", "counter", "Messages appended to the shared log.", get(&n.appends)),
                (
                    "relaycast_cluster_append_failures_total",
                    "counter",
                    "Appends Redis refused or did not answer (store_unavailable).",
                    get(&n.append_failures),
                ),
                (
                    "relaycast_cluster_pipelines_total",
                    "counter",
                    "Round trips that carried appends.",
                    get(&n.pipelines),
                ),
                (
                    "relaycast_cluster_reads_total",
                    "counter",
                    "Room loads and gap refills read from the log.",
                    get(&n.reads),
                ),
                (
                    "relaycast_cluster_redis_errors_total",
                    "counter",
                    "Redis operations that failed.",
                    get(&n.redis_errors),
                ),
            ]
        }
    };
    let mut out = String::with_capacity(4096);
    for (name, kind, help, value) in rows.into_iter().chain(blob_rows).chain(media_rows).chain(cluster_rows) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    out
}
