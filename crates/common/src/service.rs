//! The one `main` every service binary shares: load the configuration layers, answer
//! `--healthcheck` (the container's health probe), set up logging, log the effective configuration
//! without secrets, run until SIGTERM/SIGINT, and end with one line on error.

use std::error::Error;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Layers, TelemetrySettings};

/// What the shared `main` needs to know about a service's settings.
pub trait ServiceSettings: Sized + Debug {
    fn load(layers: &Layers) -> Result<Self, ConfigError>;
    fn telemetry(&self) -> &TelemetrySettings;
    /// The address whose `/healthz` answers `--healthcheck`.
    fn health_addr(&self) -> SocketAddr;
}

/// Runs a service binary: `run` is the service library's `run(settings, shutdown)`.
pub async fn main<S, T, E, Fut>(
    name: &str,
    run: impl FnOnce(S, CancellationToken) -> Fut,
) -> ExitCode
where
    S: ServiceSettings,
    E: Error,
    Fut: Future<Output = Result<T, E>>,
{
    let settings = match Layers::from_env().and_then(|layers| S::load(&layers)) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    if std::env::args().any(|arg| arg == "--healthcheck") {
        let healthy = crate::healthcheck::probe(&settings.health_addr().to_string(), "/healthz");
        return if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    // Before the subscriber, so that its layer exports the service's spans; the service's `run`
    // picks the same provider up (`Tracing::for_service`).
    let traces = match crate::otel::Tracing::install(&settings.telemetry().otel, name) {
        Ok(traces) => traces,
        Err(error) => return fail(&error),
    };
    if let Err(error) = crate::telemetry::init_tracing(settings.telemetry(), &traces) {
        return fail(&error);
    }
    tracing::info!(?settings, "starting {name}");
    let code = match run(settings, crate::shutdown::on_signal()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %chain(&error), "{name} failed");
            fail(&error)
        }
    };
    // Spans still buffered are exported before the process ends.
    traces.shutdown().await;
    code
}

/// Prints `Error: ...` with the whole cause chain on one line; a backtrace would only hide it.
fn fail(error: &dyn Error) -> ExitCode {
    eprintln!("Error: {}", chain(error));
    ExitCode::FAILURE
}

fn chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
