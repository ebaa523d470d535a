//! `aggregator`: the shared service `main` over [`tickpipe_aggregator::run`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tickpipe_common::service::main("aggregator", tickpipe_aggregator::run).await
}
