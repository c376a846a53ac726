//! The `relaycast` binary: flags, logging, bind, serve until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use relaycast::Config;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: each message allocates and frees a few small buffers
/// (its decoded fields, its frames, its stored form) on whichever runtime thread carries it,
/// and each burst a write buffer, which glibc's malloc served with a tenth of the server's
/// CPU and fresh pages faulted in. Measured against glibc's and mimalloc in
/// bench/RESULTS.md; jemalloc also keeps an idle connection's memory lowest.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `relaycast publish ...` streams a file into a room; other subcommands below; anything
    // else runs the server.
    if std::env::args().nth(1).as_deref() == Some("publish") {
        let args = relaycast::publish::PublishArgs::parse_from(std::env::args().skip(1));
        tracing_subscriber::fmt().with_env_filter(EnvFilter::new("warn")).with_writer(std::io::stderr).init();
        let sent = match relaycast::publish::publish(&args, shutdown_signal()).await {
            Ok(sent) => sent,
            Err(err) => {
                eprintln!("relaycast publish: {err}");
                std::process::exit(1);
            }
        };
        eprintln!("done: {sent} frames sent");
        return Ok(());
    }
    // `relaycast token ...` mints an access token; `relaycast keygen ...` writes a key pair.
    if std::env::args().nth(1).as_deref() == Some("token") {
        let args = relaycast::auth::mint::TokenArgs::parse_from(std::env::args().skip(1));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match relaycast::auth::mint::mint(&args, now) {
            Ok(token) => println!("{token}"),
            Err(err) => {
                eprintln!("relaycast token: {err}");
                std::process::exit(2);
            }
        }
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("keygen") {
        let args = KeygenArgs::parse_from(std::env::args().skip(1));
        match relaycast::auth::keys::write_key_pair(&args.out) {
            Ok((private, public)) => {
                println!("private key (keep it with the app's backend, which signs tokens): {}", private.display());
                println!(
                    "public key (give it to the server: --auth-public-key {}): {}",
                    public.display(),
                    public.display()
                );
            }
            Err(err) => {
                eprintln!("relaycast keygen: {err}");
                std::process::exit(2);
            }
        }
        return Ok(());
    }
    let config = Config::parse();
    tracing_subscriber::fmt().with_env_filter(EnvFilter::try_new(&config.log).context("invalid --log filter")?).init();
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr()?;
    relaycast::run_with_ready(listener, config, shutdown_signal(), |ready| {
        // The one line people look for: where to open the app, once it answers.
        println!("Relaycast is running: open {}://{addr}/", ready.scheme);
        if let Some(fingerprint) = &ready.fingerprint {
            println!("TLS certificate SHA-256 fingerprint: {fingerprint}");
        }
    })
    .await?;
    Ok(())
}

/// Write an Ed25519 key pair for signing tokens (EdDSA).
#[derive(Debug, Parser)]
#[command(name = "relaycast keygen")]
struct KeygenArgs {
    /// Where to write: `<OUT>.pem` (private, mode 0600) and `<OUT>.pub.pem` (public).
    #[arg(long, default_value = "relaycast-token-key")]
    out: std::path::PathBuf,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
