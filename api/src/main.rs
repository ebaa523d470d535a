//! `api`: the shared service `main` over [`tickpipe_api::run`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tickpipe_common::service::main("api", tickpipe_api::run).await
}
