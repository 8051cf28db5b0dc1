#[tokio::main]
async fn main() -> std::process::ExitCode {
    tidelog::telemetry::init();
    match tidelog::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
