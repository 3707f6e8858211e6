//! A `kassa up` child process: started on a data directory with every port 0, its addresses read
//! from the banner, stopped with SIGTERM (or killed with SIGKILL, for crash tests).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How much of the child's stderr is kept for error messages.
const STDERR_TAIL_BYTES_MAX: usize = 16 * 1024;

/// What can go wrong with the child host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The program could not be started or signalled.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The banner did not name both addresses before the deadline or the process ended.
    #[error("the host did not start: {0}")]
    Start(String),
    /// The host did not exit within the deadline after SIGTERM.
    #[error("the host did not stop within {0} ms")]
    Stop(u64),
}

/// A running `kassa up`.
#[derive(Debug)]
pub struct HostProcess {
    child: Child,
    /// HTTP address from the `http: http://ADDR` (or `https://ADDR`) banner line.
    pub http: SocketAddr,
    /// ISO 8583 address from the `iso: ADDR` banner line.
    pub iso: SocketAddr,
    /// `<data-dir>/demo/credentials.json`.
    pub credentials: PathBuf,
    stderr_tail: Arc<Mutex<String>>,
}

impl HostProcess {
    /// Runs `program up --data-dir DATA_DIR` on port 0s (plus `--database-url` when given) with
    /// `KASSA_LOG=warn`, and waits for its banner.
    pub async fn start(
        program: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        start_deadline: Duration,
    ) -> Result<HostProcess, HostError> {
        HostProcess::start_with_args(program, data_dir, database_url, &[], start_deadline).await
    }

    /// [`HostProcess::start`] with more arguments for `up`, e.g. `--issuer-url URL`.
    pub async fn start_with_args(
        program: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        args: &[&str],
        start_deadline: Duration,
    ) -> Result<HostProcess, HostError> {
        let mut command = Command::new(program);
        command.arg("up").arg("--data-dir").arg(data_dir).args(args);
        for flag in ["--http", "--iso", "--sim"] {
            command.arg(flag).arg("127.0.0.1:0");
        }
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        for name in ["KASSA_DATABASE_URL", "KASSA_HTTP", "KASSA_ISO", "KASSA_SIM", "KASSA_DATA_DIR", "KASSA_ISSUER_URL"]
        {
            command.env_remove(name);
        }
        // KASSA_TEST_HOST_LOG raises the spawned host's log level when a test needs its story.
        let log = std::env::var("KASSA_TEST_HOST_LOG").unwrap_or_else(|_| "warn".to_owned());
        command.env("KASSA_LOG", log).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.kill_on_drop(true);
        let mut child =
            command.spawn().map_err(|source| HostError::Spawn { program: program.display().to_string(), source })?;
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(keep_tail(stderr, stderr_tail.clone()));
        }
        let stdout = child.stdout.take().ok_or_else(|| HostError::Start("no stdout".into()))?;
        let banner = tokio::time::timeout(start_deadline, read_banner(stdout)).await;
        let tail = || stderr_tail.lock().map(|tail| tail.clone()).unwrap_or_default();
        let (http, iso) = match banner {
            Ok(Some(addresses)) => addresses,
            Ok(None) => return Err(HostError::Start(format!("it exited; stderr: {}", tail()))),
            Err(_) => return Err(HostError::Start(format!("no banner within the deadline; stderr: {}", tail()))),
        };
        Ok(HostProcess { child, http, iso, credentials: data_dir.join("demo/credentials.json"), stderr_tail })
    }

    /// The last lines the host wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail.lock().map(|tail| tail.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, as a crash: nothing is flushed, nothing shuts down.
    pub async fn kill(mut self) -> Result<(), HostError> {
        self.child.kill().await.map_err(|source| HostError::Spawn { program: "kill".into(), source })
    }

    /// SIGTERM (graceful shutdown) and wait for the exit; SIGKILL after `deadline`.
    pub async fn stop(mut self, deadline: Duration) -> Result<(), HostError> {
        if let Some(pid) = self.child.id() {
            // tokio can only send SIGKILL; the `kill` utility sends SIGTERM without unsafe code.
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await
                .map_err(|source| HostError::Spawn { program: "kill".into(), source })?;
            if !status.success() {
                return Err(HostError::Spawn { program: "kill -TERM".into(), source: std::io::Error::other("failed") });
            }
        }
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(HostError::Stop(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)))
            }
        }
    }
}

/// Reads stdout until both banner lines were seen, then keeps draining it in the background (a
/// full pipe would block the host). `None` when stdout ends first.
async fn read_banner(stdout: impl AsyncRead + Unpin + Send + 'static) -> Option<(SocketAddr, SocketAddr)> {
    let mut lines = BufReader::new(stdout).lines();
    let (mut http, mut iso) = (None, None);
    while let Ok(Some(line)) = lines.next_line().await {
        // `http: http://ADDR`, or `http: https://ADDR` when the host serves TLS.
        if let Some(url) = line.strip_prefix("http: ") {
            let addr = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
            http = addr.trim().parse().ok();
        } else if let Some(addr) = line.strip_prefix("iso: ") {
            iso = addr.split_whitespace().next().and_then(|addr| addr.parse().ok());
        }
        if let (Some(http), Some(iso)) = (http, iso) {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Some((http, iso));
        }
    }
    None
}

async fn keep_tail(mut stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<String>>) {
    let mut chunk = [0_u8; 4096];
    while let Ok(read) = stderr.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        if let Ok(mut tail) = tail.lock() {
            tail.push_str(&String::from_utf8_lossy(&chunk[..read]));
            if tail.len() > STDERR_TAIL_BYTES_MAX {
                let cut = tail.len() - STDERR_TAIL_BYTES_MAX;
                let cut = (cut..tail.len()).find(|&index| tail.is_char_boundary(index)).unwrap_or(tail.len());
                tail.drain(..cut);
            }
        }
    }
}

/// A host on a fresh temporary data directory, removed when this is dropped.
#[derive(Debug)]
pub struct SpawnedHost {
    /// The running host.
    pub process: HostProcess,
    data_dir: tempfile::TempDir,
}

impl SpawnedHost {
    /// `program up` on a new temporary data directory (see [`HostProcess::start`]).
    pub async fn start(
        program: &Path,
        database_url: Option<&str>,
        start_deadline: Duration,
    ) -> Result<SpawnedHost, HostError> {
        let data_dir = tempfile::Builder::new()
            .prefix("kassa-bench-")
            .tempdir()
            .map_err(|source| HostError::Spawn { program: "mkdtemp".into(), source })?;
        let process = HostProcess::start(program, data_dir.path(), database_url, start_deadline).await?;
        Ok(SpawnedHost { process, data_dir })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Stops the host gracefully and removes its data directory.
    pub async fn stop(self, deadline: Duration) -> Result<(), HostError> {
        let result = self.process.stop(deadline).await;
        drop(self.data_dir);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_banner_names_the_addresses_over_http_or_https() {
        for (banner, expected) in [
            ("kassa 0.0.0 is up\nhttp: http://127.0.0.1:8080\niso: 127.0.0.1:8583\n", "127.0.0.1:8080"),
            (
                "http: https://127.0.0.1:8443\nback_office: https://127.0.0.1:8443/\niso: 127.0.0.1:8583\n",
                "127.0.0.1:8443",
            ),
        ] {
            let (http, iso) = read_banner(std::io::Cursor::new(banner.as_bytes().to_vec())).await.unwrap();
            assert_eq!(http, expected.parse::<SocketAddr>().unwrap());
            assert_eq!(iso, "127.0.0.1:8583".parse::<SocketAddr>().unwrap());
        }
        assert!(read_banner(std::io::Cursor::new(b"iso: 127.0.0.1:1\n".to_vec())).await.is_none());
    }
}
