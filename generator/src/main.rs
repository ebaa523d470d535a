//! `generator`: parses configuration and calls [`tickpipe_generator::run`].

use anyhow::Context;
use tickpipe_common::config::Layers;
use tickpipe_generator::settings::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tickpipe_common::exit_with(run().await)
}

async fn run() -> anyhow::Result<()> {
    let layers = Layers::from_env()?;
    let settings = Settings::load(&layers)?;
    if std::env::args().any(|arg| arg == "--healthcheck") {
        let addr = settings.generator.metrics_addr.to_string();
        std::process::exit(if tickpipe_common::healthcheck::probe(&addr, "/healthz") {
            0
        } else {
            1
        });
    }
    tickpipe_common::telemetry::init_tracing(&settings.telemetry)?;
    tracing::info!(?settings, "starting generator");
    let shutdown = tickpipe_common::shutdown::on_signal();
    tickpipe_generator::run(settings, shutdown)
        .await
        .context("generator failed")?;
    Ok(())
}
