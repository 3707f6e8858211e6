//! Process-wide shutdown: SIGINT/SIGTERM cancel one `CancellationToken` that every server (HTTP
//! now; the ISO gateway and the simulators later) watches, so they stop together and let in-flight
//! work finish.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM (Ctrl-C elsewhere than Unix).
///
/// The signal handlers are installed before this returns, so a signal sent right after start-up
/// is never lost to the default action (which would kill the process with a non-zero status).
/// Must be called inside a Tokio runtime. The task ends early when `token` is cancelled otherwise.
pub fn cancel_on_signals(token: CancellationToken) -> std::io::Result<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
                () = token.cancelled() => return,
            }
            token.cancel();
        }))
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::spawn(async move {
            tokio::select! {
                result = tokio::signal::ctrl_c() => {
                    if let Err(error) = result {
                        tracing::error!(%error, "cannot listen for Ctrl-C");
                        return;
                    }
                    tracing::info!("Ctrl-C received, shutting down");
                }
                () = token.cancelled() => return,
            }
            token.cancel();
        }))
    }
}
