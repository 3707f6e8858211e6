//! Sockets: accept under a global and a per-address connection cap, give a new connection a
//! short time to send its first frame (TLS handshake included), then read frames with the idle
//! and incomplete-frame timeouts, answer in order, stop gracefully.
//!
//! A slot is what a hostile peer can take without saying anything, so every slot is bounded
//! in time (the first-frame timeout before a connection has spoken, the idle timeout after)
//! and in number (per address and in total), and at the global cap a connection that has not
//! spoken yet gives its slot to a newcomer. Warnings about refused connections and failed
//! accepts are rate-limited: under attack they would otherwise be the attack's amplifier.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use kassa_iso8583::frame::{frame_length, LENGTH_PREFIX_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::{duration_ms, GatewayConfig, GatewayError};

/// Read buffer per connection: a typical request frame (well under 1 KiB) fits whole.
const READ_BUFFER_BYTES: usize = 2048;
/// A warning that may repeat under load is logged at most once per interval, with the count
/// of the occurrences it stands for.
pub const WARNING_INTERVAL_MS: u64 = 10_000;
/// Back-off after a failed accept (out of file descriptors, most often): doubles from the
/// first value to the last while accepts keep failing, so a host out of descriptors neither
/// spins nor stays deaf for long once descriptors are free again.
pub const ACCEPT_BACKOFF_FIRST_MS: u64 = 10;
/// See [`ACCEPT_BACKOFF_FIRST_MS`].
pub const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;
/// How long a connection admitted by evicting a silent one waits for that one's slot. Its task
/// only has to notice the eviction, but on a host busy with a flood that can take a while; less
/// than the first-frame timeout, which frees slots anyway.
const EVICTION_WAIT_MS: u64 = 3_000;

pub(crate) struct Server {
    config: GatewayConfig,
    handler: Arc<Handler>,
    connections: Arc<Semaphore>,
    per_address: Arc<AddressCounts>,
    silent: Arc<SilentConnections>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AddressCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressCounts").finish_non_exhaustive()
    }
}

/// Why a connection ends.
#[derive(Debug)]
enum Close {
    /// The peer closed, went idle, never spoke, or the host is stopping.
    Quietly,
    /// The peer broke the framing rules (too long, too short, too slow, unreadable).
    Violation(&'static str),
}

/// Which warnings the accept loop rate-limits.
#[derive(Debug, Clone, Copy)]
enum Warning {
    AcceptFailed,
    AtCap,
    AtAddressCap,
    Evicted,
}

/// A warning logged at most once per [`WARNING_INTERVAL_MS`]; the occurrences in between are
/// counted and reported with the next line.
#[derive(Debug)]
struct RateLimited {
    interval: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new(interval: Duration) -> RateLimited {
        RateLimited { interval, last_logged: None, suppressed: 0 }
    }

    /// `Some(suppressed since the last line)` when this occurrence is to be logged.
    fn occurred(&mut self, now: Instant) -> Option<u64> {
        if self.last_logged.is_some_and(|at| now.duration_since(at) < self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The accept loop's rate-limited warnings.
#[derive(Debug)]
struct Warnings {
    accept_failed: RateLimited,
    at_cap: RateLimited,
    at_address_cap: RateLimited,
    evicted: RateLimited,
}

impl Warnings {
    fn new() -> Warnings {
        let interval = duration_ms(WARNING_INTERVAL_MS);
        Warnings {
            accept_failed: RateLimited::new(interval),
            at_cap: RateLimited::new(interval),
            at_address_cap: RateLimited::new(interval),
            evicted: RateLimited::new(interval),
        }
    }

    fn log(&mut self, warning: Warning, detail: &dyn std::fmt::Display, limit: usize) {
        let limiter = match warning {
            Warning::AcceptFailed => &mut self.accept_failed,
            Warning::AtCap => &mut self.at_cap,
            Warning::AtAddressCap => &mut self.at_address_cap,
            Warning::Evicted => &mut self.evicted,
        };
        let Some(suppressed) = limiter.occurred(Instant::now()) else { return };
        let interval_ms = WARNING_INTERVAL_MS;
        match warning {
            Warning::AcceptFailed => {
                tracing::warn!(error = %detail, suppressed, interval_ms, "accept failed");
            }
            Warning::AtCap => {
                tracing::warn!(peer = %detail, connections_max = limit, suppressed, interval_ms, "connection refused: at the cap");
            }
            Warning::Evicted => {
                tracing::warn!(
                    peer = %detail,
                    connections_max = limit,
                    suppressed,
                    interval_ms,
                    "at the cap: the oldest connection that had not spoken made room"
                );
            }
            Warning::AtAddressCap => {
                tracing::warn!(
                    peer = %detail,
                    connections_per_address_max = limit,
                    suppressed,
                    interval_ms,
                    "connection refused: the address is at its cap"
                );
            }
        }
    }
}

/// What the per-address cap counts by: an IPv4 address, or the /64 prefix of an IPv6 one (a
/// single subscriber usually holds a whole /64, so counting by full IPv6 address would let one
/// peer take every slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddressKey(IpAddr);

impl AddressKey {
    fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// Open connections per address. An entry exists only while its address has a connection, so
/// the map holds at most `connections_max` entries whatever peers connect.
#[derive(Default)]
struct AddressCounts {
    counts: Mutex<HashMap<AddressKey, usize>>,
}

/// One connection's place in its address's count, given back on drop.
struct AddressSlot {
    counts: Arc<AddressCounts>,
    key: AddressKey,
}

impl AddressCounts {
    fn try_take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = AddressKey::of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: Arc::clone(self), key })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A new connection's global slot: held, or queued behind the silent connection it evicted.
enum Slot {
    Held(OwnedSemaphorePermit),
    Queued(Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>),
}

/// Connections that have not completed their first frame, oldest first. At the global cap a new
/// connection takes the slot of the oldest of them: a terminal sends its request as soon as it
/// is connected, so a connection still silent is the likeliest to be a flood's, and a real
/// terminal is refused only when every slot holds a connection that has spoken.
#[derive(Default)]
struct SilentConnections {
    next: std::sync::atomic::AtomicU64,
    by_age: Mutex<BTreeMap<u64, CancellationToken>>,
}

/// A connection's entry among the silent ones, removed when it speaks or ends.
struct SilentEntry {
    silent: Arc<SilentConnections>,
    seq: u64,
}

impl SilentConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        self.by_age.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(self: &Arc<Self>, stop: CancellationToken) -> SilentEntry {
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(seq, stop);
        SilentEntry { silent: Arc::clone(self), seq }
    }

    /// Stops the oldest silent connection; `false` when there is none.
    fn evict_oldest(&self) -> bool {
        // Cancelled under the lock: a connection that finds its entry gone after its first
        // frame knows it was evicted (see `serve`).
        let mut by_age = self.lock();
        let Some((_, stop)) = by_age.pop_first() else { return false };
        stop.cancel();
        true
    }
}

impl Drop for SilentEntry {
    fn drop(&mut self) {
        self.silent.lock().remove(&self.seq);
    }
}

impl std::fmt::Debug for SilentConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SilentConnections").finish_non_exhaustive()
    }
}

impl Server {
    pub(crate) fn new(config: GatewayConfig, handler: Handler) -> Server {
        let connections = Arc::new(Semaphore::new(config.connections_max));
        let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        Server {
            config,
            handler: Arc::new(handler),
            connections,
            per_address: Arc::default(),
            silent: Arc::default(),
            tls,
        }
    }

    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        let background = self.handler.start_background(shutdown.clone());
        let mut warnings = Warnings::new();
        let mut backoff_ms = ACCEPT_BACKOFF_FIRST_MS;
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        backoff_ms = ACCEPT_BACKOFF_FIRST_MS;
                        accepted
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving the others.
                        warnings.log(Warning::AcceptFailed, &error, self.config.connections_max);
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(duration_ms(backoff_ms)) => {}
                        }
                        backoff_ms = (backoff_ms * 2).min(ACCEPT_BACKOFF_MAX_MS);
                        continue;
                    }
                },
            };
            // Refused connections hold nothing: the address's count is checked before a
            // global slot is taken.
            let max = self.config.connections_per_address_max;
            let Some(address_slot) = self.per_address.try_take(peer.ip(), max) else {
                warnings.log(Warning::AtAddressCap, &peer.ip(), max);
                drop(stream);
                continue;
            };
            let slot = match Arc::clone(&self.connections).try_acquire_owned() {
                Ok(permit) => Slot::Held(permit),
                Err(_) => {
                    // Queued for a slot before anybody is evicted: the semaphore is fair, so the
                    // slot the victim gives back is this connection's, not the next flood socket's.
                    let mut wait = Box::pin(Arc::clone(&self.connections).acquire_owned());
                    let queued = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
                    match queued {
                        Poll::Ready(Ok(permit)) => Slot::Held(permit),
                        // Closed: only ever at shutdown.
                        Poll::Ready(Err(_)) => break,
                        Poll::Pending if self.silent.evict_oldest() => {
                            warnings.log(Warning::Evicted, &peer.ip(), self.config.connections_max);
                            Slot::Queued(wait)
                        }
                        Poll::Pending => {
                            warnings.log(Warning::AtCap, &peer.ip(), self.config.connections_max);
                            drop(stream);
                            continue;
                        }
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let server = Arc::clone(&self);
            let stop = shutdown.child_token();
            tokio::spawn(async move {
                let permit = match slot {
                    Slot::Held(permit) => permit,
                    // The evicted connection gives its slot back as soon as its task notices.
                    Slot::Queued(wait) => {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            waited = tokio::time::timeout(duration_ms(EVICTION_WAIT_MS), wait) => match waited {
                                Ok(Ok(permit)) => permit,
                                Ok(Err(_)) | Err(_) => {
                                    tracing::debug!(%peer, "no slot came free after an eviction: dropped");
                                    return;
                                }
                            },
                        }
                    }
                };
                // Evictable only once it holds a slot: evicting a connection still waiting for
                // one would free nothing, and the newcomer that evicted it would wait in vain.
                let silent = server.silent.register(stop.clone());
                match server.connection(stream, silent, &stop).await {
                    Close::Quietly => tracing::debug!(%peer, "connection closed"),
                    Close::Violation(why) => tracing::info!(%peer, why, "connection closed"),
                }
                drop(address_slot);
                drop(permit);
            });
        }
        drop(listener);
        // Every connection holds a permit until its last answer is written.
        let all = u32::try_from(self.config.connections_max).unwrap_or(u32::MAX);
        let _ = self.connections.acquire_many(all).await;
        background.finish().await;
        Ok(())
    }

    /// A new connection: the TLS handshake (when configured) and the first frame must both be
    /// done before the first-frame deadline. `stop`: the host is stopping, or the connection,
    /// still silent, was evicted.
    async fn connection(&self, stream: TcpStream, silent: SilentEntry, stop: &CancellationToken) -> Close {
        let first_frame_deadline = Instant::now() + duration_ms(self.config.first_frame_timeout_ms);
        let Some(acceptor) = &self.tls else { return self.serve(stream, first_frame_deadline, silent, stop).await };
        let handshake = tokio::select! {
            () = stop.cancelled() => return Close::Quietly,
            handshake = tokio::time::timeout_at(first_frame_deadline, acceptor.accept(stream)) => handshake,
        };
        match handshake {
            Err(_) => Close::Violation("TLS handshake timed out"),
            Ok(Err(_)) => Close::Violation("TLS handshake failed"),
            Ok(Ok(stream)) => self.serve(stream, first_frame_deadline, silent, stop).await,
        }
    }

    async fn serve<S>(
        &self,
        stream: S,
        first_frame_deadline: Instant,
        silent: SilentEntry,
        stop: &CancellationToken,
    ) -> Close
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut silent = Some(silent);
        // Buffered: a frame usually arrives in one segment, read with one syscall.
        let mut stream = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, stream);
        let mut body = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(512);
        let mut spoken = false;
        loop {
            // Until a frame starts: the first-frame deadline before the connection has spoken,
            // the idle timeout afterwards. The rest of a frame: the incomplete-frame timeout,
            // and for the first frame the first-frame deadline too, whichever comes first.
            let first_byte_deadline =
                if spoken { Instant::now() + duration_ms(self.config.idle_timeout_ms) } else { first_frame_deadline };
            let first = tokio::select! {
                () = stop.cancelled() => return Close::Quietly,
                read = tokio::time::timeout_at(first_byte_deadline, stream.read_u8()) => match read {
                    Err(_) if spoken => return Close::Quietly,
                    // Silent sockets are what a flood is made of: not worth a line each.
                    Err(_) => return Close::Quietly,
                    Ok(Err(_)) => return Close::Quietly,
                    Ok(Ok(byte)) => byte,
                },
            };
            let mut rest_deadline = Instant::now() + duration_ms(self.config.incomplete_frame_timeout_ms);
            if !spoken {
                rest_deadline = rest_deadline.min(first_frame_deadline);
            }
            let rest = tokio::time::timeout_at(rest_deadline, async {
                let second = stream.read_u8().await.map_err(|_| "closed inside a frame")?;
                let prefix: [u8; LENGTH_PREFIX_BYTES] = [first, second];
                let length = frame_length(prefix).map_err(|_| "frame length out of bounds")?;
                body.resize(length, 0);
                stream.read_exact(&mut body).await.map_err(|_| "closed inside a frame")?;
                Ok::<(), &'static str>(())
            });
            // A connection that has spoken finishes the frame it started even when the host
            // stops; one still silent can be evicted mid-frame.
            let rest = if spoken {
                rest.await
            } else {
                tokio::select! {
                    () = stop.cancelled() => return Close::Quietly,
                    rest = rest => rest,
                }
            };
            match rest {
                Err(_) => return Close::Violation("incomplete frame timed out"),
                Ok(Err(why)) => return Close::Violation(why),
                Ok(Ok(())) => {}
            }
            spoken = true;
            // Spoken: no longer evictable. Evicted (or stopping) just as the first frame came
            // in: its slot is given away, so it is not served.
            drop(silent.take());
            if stop.is_cancelled() {
                return Close::Quietly;
            }
            out.clear();
            if !self.handler.handle(&body, &mut out).await {
                return Close::Violation("unreadable frame");
            }
            // A peer that never reads its answers would otherwise hold the slot once the
            // socket buffers are full.
            let write = async {
                let writer = stream.get_mut();
                writer.write_all(&out).await?;
                writer.flush().await
            };
            match tokio::time::timeout(duration_ms(self.config.incomplete_frame_timeout_ms), write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Close::Quietly,
                Err(_) => return Close::Violation("answer not read in time"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_rate_limited_warning_counts_what_it_suppressed() {
        let mut limited = RateLimited::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limited.occurred(start), Some(0));
        for ms in 1..=99 {
            assert_eq!(limited.occurred(start + Duration::from_millis(ms * 10)), None);
        }
        assert_eq!(limited.occurred(start + Duration::from_secs(10)), Some(99));
        assert_eq!(limited.occurred(start + Duration::from_secs(11)), None);
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(AddressKey::of(mapped), AddressKey::of("10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn an_address_slot_is_given_back_and_its_entry_forgotten() {
        let counts = Arc::new(AddressCounts::default());
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let first = counts.try_take(ip, 2).unwrap();
        let second = counts.try_take(ip, 2).unwrap();
        assert!(counts.try_take(ip, 2).is_none());
        assert!(counts.try_take("127.0.0.3".parse().unwrap(), 2).is_some());
        drop(first);
        let third = counts.try_take(ip, 2).unwrap();
        drop((second, third));
        assert!(counts.counts.lock().unwrap().is_empty());
        assert!(counts.try_take(ip, 0).is_none());
        assert!(counts.counts.lock().unwrap().is_empty());
    }
}
