//! Sockets: accept with a connection cap, read frames with the idle and incomplete-frame
//! timeouts, answer in order, stop gracefully.

use std::sync::Arc;

use kassa_iso8583::frame::{frame_length, LENGTH_PREFIX_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::{duration_ms, GatewayConfig, GatewayError};

/// Read buffer per connection: a typical request frame (well under 1 KiB) fits whole.
const READ_BUFFER_BYTES: usize = 2048;

#[derive(Debug)]
pub(crate) struct Server {
    config: GatewayConfig,
    handler: Arc<Handler>,
    connections: Arc<Semaphore>,
}

/// Why a connection ends.
#[derive(Debug)]
enum Close {
    /// The peer closed, went idle, or the host is stopping.
    Quietly,
    /// The peer broke the framing rules (too long, too short, too slow, unreadable).
    Violation(&'static str),
}

impl Server {
    pub(crate) fn new(config: GatewayConfig, handler: Handler) -> Server {
        let connections = Arc::new(Semaphore::new(config.connections_max));
        Server { config, handler: Arc::new(handler), connections }
    }

    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        self.handler.start_background(shutdown.clone());
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(duration_ms(10)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
                tracing::warn!(%peer, connections_max = self.config.connections_max, "connection refused: at the cap");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                match server.serve(stream, &shutdown).await {
                    Close::Quietly => tracing::debug!(%peer, "connection closed"),
                    Close::Violation(why) => tracing::info!(%peer, why, "connection closed"),
                }
                drop(permit);
            });
        }
        drop(listener);
        // Every connection holds a permit until its last answer is written.
        let all = u32::try_from(self.config.connections_max).unwrap_or(u32::MAX);
        let _ = self.connections.acquire_many(all).await;
        Ok(())
    }

    async fn serve(&self, stream: TcpStream, shutdown: &CancellationToken) -> Close {
        // Buffered: a frame usually arrives in one segment, read with one syscall.
        let mut stream = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, stream);
        let mut body = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(512);
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Close::Quietly,
                read = tokio::time::timeout(duration_ms(self.config.idle_timeout_ms), stream.read_u8()) => match read {
                    Err(_) => return Close::Quietly,
                    Ok(Err(_)) => return Close::Quietly,
                    Ok(Ok(byte)) => byte,
                },
            };
            let rest = tokio::time::timeout(duration_ms(self.config.incomplete_frame_timeout_ms), async {
                let second = stream.read_u8().await.map_err(|_| "closed inside a frame")?;
                let prefix: [u8; LENGTH_PREFIX_BYTES] = [first, second];
                let length = frame_length(prefix).map_err(|_| "frame length out of bounds")?;
                body.resize(length, 0);
                stream.read_exact(&mut body).await.map_err(|_| "closed inside a frame")?;
                Ok::<(), &'static str>(())
            })
            .await;
            match rest {
                Err(_) => return Close::Violation("incomplete frame timed out"),
                Ok(Err(why)) => return Close::Violation(why),
                Ok(Ok(())) => {}
            }
            out.clear();
            if !self.handler.handle(&body, &mut out).await {
                return Close::Violation("unreadable frame");
            }
            if stream.get_mut().write_all(&out).await.is_err() {
                return Close::Quietly;
            }
        }
    }
}
