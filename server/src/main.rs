//! The `relaycast` binary: flags, logging, bind, serve until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use relaycast::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `relaycast publish ...` streams a file into a room; anything else runs the server.
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
