//! A fake network printer for tests (feature `testing`): a TCP listener on `127.0.0.1:0` that
//! collects each connection's bytes as one job, as a printer on port 9100 does.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::printer::Printer;

/// The most bytes one job may have before the fake printer stops reading it.
const JOB_BYTES_MAX: usize = 64 << 20;
/// The most finished jobs waiting to be taken by [`FakePrinter::next_job`].
const JOBS_QUEUED_MAX: usize = 64;
/// The most connections a stalled printer holds open.
const STALLED_CONNECTIONS_MAX: usize = 16;

/// A printer on `127.0.0.1:0`. Dropping it stops the listener and every connection.
#[derive(Debug)]
pub struct FakePrinter {
    addr: SocketAddr,
    jobs: mpsc::Receiver<Vec<u8>>,
    task: JoinHandle<()>,
}

impl FakePrinter {
    /// A printer that reads each connection to its end and queues what it received as one job.
    /// Like a real one on port 9100 it prints one job at a time, in the order the connections
    /// came (the next waits in the listen queue), so two copies sent one after the other come
    /// out in that order.
    pub async fn start() -> io::Result<FakePrinter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, jobs) = mpsc::channel(JOBS_QUEUED_MAX);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Ok(job) = read_job(stream).await {
                    let _ = sender.send(job).await;
                }
            }
        });
        Ok(FakePrinter { addr, jobs, task })
    }

    /// A printer that accepts connections and never reads them (out of paper, cover open): a
    /// large enough job fills the socket buffers and the sender's write times out.
    pub async fn stalled() -> io::Result<FakePrinter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (_sender, jobs) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let mut held = Vec::with_capacity(STALLED_CONNECTIONS_MAX);
            while let Ok((stream, _)) = listener.accept().await {
                if held.len() < STALLED_CONNECTIONS_MAX {
                    held.push(stream);
                }
            }
        });
        Ok(FakePrinter { addr, jobs, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The printer to print to it.
    pub fn printer(&self) -> Printer {
        Printer::Tcp(self.addr)
    }

    /// The next job received, waiting at most `timeout` for it.
    pub async fn next_job(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(timeout, self.jobs.recv()).await.ok().flatten()
    }
}

impl Drop for FakePrinter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A job is read to its end within this long (one silent client never holds up the next).
const JOB_READ_MS: u64 = 10_000;

async fn read_job(stream: TcpStream) -> io::Result<Vec<u8>> {
    let mut job = Vec::new();
    let limit = u64::try_from(JOB_BYTES_MAX).unwrap_or(u64::MAX);
    tokio::time::timeout(Duration::from_millis(JOB_READ_MS), stream.take(limit).read_to_end(&mut job))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the job did not end"))??;
    Ok(job)
}
