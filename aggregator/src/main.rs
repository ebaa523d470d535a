//! `aggregator`: parses configuration and calls [`tickpipe_aggregator::run`].

use anyhow::Context;
use tickpipe_aggregator::settings::Settings;
use tickpipe_common::config::Layers;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tickpipe_common::exit_with(run().await)
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load(&Layers::from_env()?)?;
    if std::env::args().any(|arg| arg == "--healthcheck") {
        let addr = settings.aggregator.metrics_addr.to_string();
        std::process::exit(if tickpipe_common::healthcheck::probe(&addr, "/healthz") {
            0
        } else {
            1
        });
    }
    tickpipe_common::telemetry::init_tracing(&settings.telemetry)?;
    tracing::info!(?settings, "starting aggregator");
    let shutdown = tickpipe_common::shutdown::on_signal();
    tickpipe_aggregator::run(settings, shutdown)
        .await
        .context("aggregator failed")?;
    Ok(())
}
