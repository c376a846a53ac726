//! Relaycast load generator and the bare reference server it is compared with.
//!
//! Every scenario speaks the real protocol over real WebSockets and prints one line of JSON.
//! `bench/run.sh` starts the servers, runs all scenarios and writes `bench/RESULTS.md` inputs.
//!
//! # Layout
//! - [`reference`](mod@reference), a bare tokio-tungstenite relay with rooms (no JSON, storage or limits),
//!   the ceiling Relaycast is reported against.
//! - [`scenarios`], fan-out, pairs, idle and history.
//! - [`blobs`], blob cache upload and download throughput (download next to nginx).
//! - [`media`](mod@media), the media relay: one publisher, N viewers.
//! - [`stats`], percentiles.
//! - [`store`](mod@store), the durable store's fold into redb.
//! - [`engine`](mod@engine), Relaycast's IO-free core alone, per message of many small rooms.
//!

mod blobs;
mod engine;
mod media;
mod reference;
mod scenarios;
mod stats;
mod store;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "relaycast-bench", about = "Relaycast load generator")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bare relay (a text frame goes to the other members of its room).
    Reference {
        #[arg(long, default_value = "127.0.0.1:9100")]
        bind: std::net::SocketAddr,
    },
    /// One publisher, many subscribers in one room.
    Fanout(scenarios::FanoutArgs),
    /// Pairs of clients ping-ponging.
    Pairs(scenarios::PairsArgs),
    /// Many joined, idle connections; server memory per connection.
    Idle(scenarios::IdleArgs),
    /// A new joiner into a room with a long history.
    History(scenarios::HistoryArgs),
    /// Media relay: one publisher, N viewers (WHIP/WHEP, real WebRTC peers).
    Media(media::MediaArgs),
    /// Blob cache: upload throughput, and download throughput next to nginx serving the same file.
    Blobs(blobs::BlobArgs),
    /// The durable store: folding many small rooms' messages into redb, in arrival order
    /// against key order.
    StoreFold(store::FoldArgs),
    /// The engine alone (no sockets, no store IO): many small rooms' messages per second
    /// next to the least an in-process relay does.
    Engine(engine::EngineArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match args.command {
            Command::Reference { bind } => reference::serve(bind).await,
            Command::Fanout(a) => scenarios::fanout(a).await,
            Command::Pairs(a) => scenarios::pairs(a).await,
            Command::Idle(a) => scenarios::idle(a).await,
            Command::History(a) => scenarios::history(a).await,
            Command::Blobs(a) => blobs::run(a).await,
            Command::Media(a) => media::run(a).await,
            Command::StoreFold(a) => store::fold(a),
            Command::Engine(a) => engine::run(a),
        }
    })
}
