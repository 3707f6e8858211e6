//! Where the ESC/POS bytes go: appended to a file (a capture, or a device such as
//! `/dev/usb/lp0`), or sent to a network printer's raw port (9100, "JetDirect").

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The raw printing port of network printers.
pub const RAW_PORT: u16 = 9100;

/// Time and size limits of one print job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintLimits {
    /// How long a TCP printer may take to accept the connection.
    pub connect_timeout_ms: u64,
    /// How long writing the whole job (and closing, or appending to the file) may take.
    pub write_timeout_ms: u64,
    /// The largest job sent; a slip is a few kilobytes.
    pub job_bytes_max: usize,
}

impl Default for PrintLimits {
    fn default() -> Self {
        PrintLimits { connect_timeout_ms: 3_000, write_timeout_ms: 10_000, job_bytes_max: 1 << 20 }
    }
}

/// Why a job was not printed. Each message names the printer and what to check.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// The printer address is neither `tcp://HOST[:PORT]` nor a path.
    #[error("printer `{input}`: {reason} (expected tcp://HOST:9100 or a file path)")]
    Address {
        /// What was given (cut to 64 characters).
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The job is larger than [`PrintLimits::job_bytes_max`].
    #[error("the print job has {bytes} bytes, more than the {max} allowed")]
    TooLarge {
        /// The job's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The TCP printer did not accept a connection in time (switched off, wrong address, or a
    /// firewall dropping the connection).
    #[error("the printer at {addr} did not answer within {timeout_ms} ms; is it on and reachable?")]
    ConnectTimeout {
        /// The printer.
        addr: SocketAddr,
        /// The limit that passed.
        timeout_ms: u64,
    },
    /// The TCP printer refused or the network failed the connection.
    #[error("cannot connect to the printer at {addr}: {source}")]
    Connect {
        /// The printer.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The printer took the connection but not the whole job in time (out of paper, cover open,
    /// or busy with another job).
    #[error("the printer {printer} did not take the job within {timeout_ms} ms; check paper and cover")]
    WriteTimeout {
        /// The printer (address or path).
        printer: String,
        /// The limit that passed.
        timeout_ms: u64,
    },
    /// Writing to the TCP printer failed.
    #[error("sending the job to the printer at {addr} failed: {source}")]
    Write {
        /// The printer.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Opening or appending to the file failed.
    #[error("cannot append to the printer file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// A printer: a file the jobs are appended to, or a TCP printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Printer {
    /// Append each job to this file (or write to this device).
    File(PathBuf),
    /// Send each job over its own connection to this address (port 9100 by convention).
    Tcp(SocketAddr),
}

impl fmt::Display for Printer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Printer::File(path) => write!(f, "{}", path.display()),
            Printer::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// The longest printer address accepted.
const ADDRESS_CHARS_MAX: usize = 4096;

impl Printer {
    /// `tcp://HOST:PORT` (the port defaults to 9100; a host name is resolved now, to its first
    /// address), `file://PATH`, or a plain path.
    pub fn parse(input: &str) -> Result<Printer, PrintError> {
        let refuse =
            |reason: &str| PrintError::Address { input: input.chars().take(64).collect(), reason: reason.to_owned() };
        let input_trimmed = input.trim();
        if input_trimmed.is_empty() {
            return Err(refuse("empty"));
        }
        if input_trimmed.len() > ADDRESS_CHARS_MAX {
            return Err(refuse("too long"));
        }
        if let Some(path) = input_trimmed.strip_prefix("file://") {
            if path.is_empty() {
                return Err(refuse("no path after file://"));
            }
            return Ok(Printer::File(PathBuf::from(path)));
        }
        let Some(host) = input_trimmed.strip_prefix("tcp://") else {
            if input_trimmed.contains("://") {
                return Err(refuse("unknown scheme"));
            }
            return Ok(Printer::File(PathBuf::from(input_trimmed)));
        };
        let host = host.trim_end_matches('/');
        if host.is_empty() {
            return Err(refuse("no host after tcp://"));
        }
        if let Ok(addr) = host.parse::<SocketAddr>() {
            return Ok(Printer::Tcp(addr));
        }
        let with_port = if has_port(host) { host.to_owned() } else { format!("{host}:{RAW_PORT}") };
        if let Ok(addr) = with_port.parse::<SocketAddr>() {
            return Ok(Printer::Tcp(addr));
        }
        let mut addrs = with_port.to_socket_addrs().map_err(|e| refuse(&format!("cannot resolve the host: {e}")))?;
        addrs.next().map(Printer::Tcp).ok_or_else(|| refuse("the host has no address"))
    }

    /// Prints `bytes` within [`PrintLimits::default`]: 3 s to connect, 10 s to send.
    pub async fn print(&self, bytes: &[u8]) -> Result<(), PrintError> {
        self.print_with(bytes, PrintLimits::default()).await
    }

    /// Prints `bytes` within `limits`: appended to the file, or sent over a new connection to
    /// the TCP printer, which is then closed.
    pub async fn print_with(&self, bytes: &[u8], limits: PrintLimits) -> Result<(), PrintError> {
        if bytes.len() > limits.job_bytes_max {
            return Err(PrintError::TooLarge { bytes: bytes.len(), max: limits.job_bytes_max });
        }
        let write_timeout = Duration::from_millis(limits.write_timeout_ms);
        let write_timed_out =
            || PrintError::WriteTimeout { printer: self.to_string(), timeout_ms: limits.write_timeout_ms };
        match self {
            Printer::File(path) => {
                let file_error = |source| PrintError::File { path: path.clone(), source };
                let append = async {
                    let mut file =
                        tokio::fs::OpenOptions::new().append(true).create(true).open(path).await.map_err(file_error)?;
                    file.write_all(bytes).await.map_err(file_error)?;
                    file.flush().await.map_err(file_error)
                };
                tokio::time::timeout(write_timeout, append).await.map_err(|_| write_timed_out())?
            }
            Printer::Tcp(addr) => {
                let addr = *addr;
                let connect_timeout = Duration::from_millis(limits.connect_timeout_ms);
                let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| PrintError::ConnectTimeout { addr, timeout_ms: limits.connect_timeout_ms })?
                    .map_err(|source| PrintError::Connect { addr, source })?;
                let send = async {
                    stream.write_all(bytes).await?;
                    stream.shutdown().await
                };
                tokio::time::timeout(write_timeout, send)
                    .await
                    .map_err(|_| write_timed_out())?
                    .map_err(|source| PrintError::Write { addr, source })
            }
        }
    }
}

/// Whether `host` ends in `:PORT` (an IPv6 address without brackets has colons but no port).
fn has_port(host: &str) -> bool {
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    let numeric = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    numeric && (!name.contains(':') || name.ends_with(']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_the_default_port() {
        let tcp = |s: &str| s.parse::<SocketAddr>().map(Printer::Tcp).ok();
        assert_eq!(Printer::parse("tcp://192.0.2.7:9101").ok(), tcp("192.0.2.7:9101"));
        assert_eq!(Printer::parse("tcp://192.0.2.7").ok(), tcp("192.0.2.7:9100"));
        assert_eq!(Printer::parse("tcp://[::1]:9100/").ok(), tcp("[::1]:9100"));
        assert_eq!(Printer::parse("tcp://[::1]").ok(), tcp("[::1]:9100"));
        assert_eq!(Printer::parse("tcp://localhost:9100").ok().map(|p| p.to_string().ends_with(":9100")), Some(true));
        assert_eq!(Printer::parse("/tmp/slips.bin").ok(), Some(Printer::File("/tmp/slips.bin".into())));
        assert_eq!(Printer::parse("file:///dev/usb/lp0").ok(), Some(Printer::File("/dev/usb/lp0".into())));
    }

    #[test]
    fn bad_addresses_say_why() {
        for (input, reason) in [
            ("", "empty"),
            ("tcp://", "no host"),
            ("http://printer", "unknown scheme"),
            ("tcp://192.0.2.7:99999", "cannot resolve"),
        ] {
            let error = Printer::parse(input).map(|p| p.to_string()).err().map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|e| e.contains(reason)), "{input}: {error:?}");
        }
    }
}
