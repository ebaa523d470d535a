//! `api`: parses configuration and calls [`tickpipe_api::run`].

use anyhow::Context;
use tickpipe_api::settings::Settings;
use tickpipe_common::config::Layers;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tickpipe_common::exit_with(run().await)
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load(&Layers::from_env()?)?;
    if std::env::args().any(|arg| arg == "--healthcheck") {
        let addr = settings.api.api_bind.to_string();
        std::process::exit(if tickpipe_common::healthcheck::probe(&addr, "/healthz") {
            0
        } else {
            1
        });
    }
    tickpipe_common::telemetry::init_tracing(&settings.telemetry)?;
    tracing::info!(?settings, "starting api");
    let shutdown = tickpipe_common::shutdown::on_signal();
    tickpipe_api::run(settings, shutdown)
        .await
        .context("api failed")?;
    Ok(())
}
