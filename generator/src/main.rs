//! `generator`: the shared service `main` over [`tickpipe_generator::run`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tickpipe_common::service::main("generator", tickpipe_generator::run).await
}
