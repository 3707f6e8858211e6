//! The bounded pool that every Argon2id hash and verification of a serving process runs in.
//!
//! Argon2id is memory-hard on purpose: each verification takes [`ARGON2_MEMORY_KIB`] (19 MiB)
//! and tens of milliseconds of one core. Run without a bound, a burst of wrong logins makes
//! the process hold one such block per request (100 concurrent logins: gigabytes) and starves
//! everything else of CPU. Here a fixed set of worker threads (about one per core) does all of
//! it, so memory stays near `workers × 19 MiB`; a caller first takes a [`HashPermit`], waiting
//! at most [`HASH_WAIT_MS_MAX`] behind at most [`HASH_WAITERS_MAX`] others, and is otherwise
//! refused with [`AuthError::Busy`] (answered `503` with `Retry-After`), never queued without
//! bound.
//!
//! A permit is taken before the account is read, and held for the whole act (read, verify,
//! record the failure): so at most `workers` attempts on one account are ever between reading
//! its failure count and recording theirs, and a lockout after N failures stops the rest of a
//! burst before it costs any hashing. A permit is freed only when the request is done with it
//! AND its last job has finished, so a client that disconnects mid-hash cannot pile up work.
//!
//! Each worker computes in Argon2 memory of its own, allocated once and zeroed after every use
//! ([`crate::secrets`]), so the allocator never ends up holding freed 19 MiB blocks.
//!
//! The pool also holds the dummy hash that unknown accounts are verified against (made once,
//! on a worker, with the same parameters as real ones), so an unknown name costs exactly what a
//! wrong password costs.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use kassa_crypto::Pepper;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::error::AuthError;
#[cfg(doc)]
use crate::secrets::ARGON2_MEMORY_KIB;
use crate::secrets::{HashError, Scratch};

/// Callers that may wait for a worker at once (per worker); beyond them a caller is refused at
/// once. A waiter holds no Argon2 memory; the bound keeps its wait (about 4 verifications of
/// 25–50 ms) well inside [`HASH_WAIT_MS_MAX`].
pub const HASH_WAITERS_PER_WORKER_MAX: usize = 4;
/// Callers that may wait for a worker at once, whatever the number of workers.
pub const HASH_WAITERS_MAX: usize = 64;
/// How long a caller waits for a worker before it is refused.
pub const HASH_WAIT_MS_MAX: u64 = 1_000;
/// Workers when the machine's parallelism cannot be read.
pub const HASH_WORKERS_DEFAULT: usize = 2;
/// Never more workers than this, however many cores (memory: workers × 19 MiB).
pub const HASH_WORKERS_MAX: usize = 32;
/// What a refused caller is told to wait before trying again, seconds.
pub const BUSY_RETRY_AFTER_S: u64 = 1;

/// How a secret is hashed: short digit codes are peppered first, back-office passwords are not
/// (they are long enough that Argon2id alone makes guessing from the database impractical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretKind {
    /// Operator passwords, refund and payment-code passwords, one-time codes.
    DigitCode,
    /// Back-office passwords.
    Password,
}

/// Work for a worker, in the worker's own Argon2 memory.
type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

struct Inner {
    /// Jobs for the workers. At most one job per permit is ever queued or running.
    jobs: Mutex<mpsc::Sender<Job>>,
    /// One permit per worker.
    permits: Arc<Semaphore>,
    /// Callers waiting for a permit now.
    waiting: AtomicUsize,
    waiters_max: usize,
    wait: Duration,
    workers: usize,
    /// The hash unknown accounts are verified against; made once, on a worker.
    dummy: OnceLock<String>,
    /// Argon2 computations run (hashes and verifications), for tests and metrics.
    jobs_run: AtomicU64,
    /// Callers refused with `Busy`.
    refused: AtomicU64,
}

/// The process's Argon2id pool. Cheap to clone; every clone is the same pool.
#[derive(Clone)]
pub struct HashPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for HashPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashPool")
            .field("workers", &self.inner.workers)
            .field("waiters_max", &self.inner.waiters_max)
            .field("wait", &self.inner.wait)
            .finish_non_exhaustive()
    }
}

impl HashPool {
    /// A pool of about one worker per core of this machine, with the default waiting bounds.
    pub fn for_this_machine() -> HashPool {
        let workers = std::thread::available_parallelism().map_or(HASH_WORKERS_DEFAULT, usize::from);
        let workers = workers.clamp(1, HASH_WORKERS_MAX);
        let waiters = (workers * HASH_WAITERS_PER_WORKER_MAX).min(HASH_WAITERS_MAX);
        HashPool::new(workers, waiters, Duration::from_millis(HASH_WAIT_MS_MAX))
    }

    /// A pool of `workers` threads (at least one), letting `waiters_max` callers wait up to
    /// `wait` each for one.
    pub fn new(workers: usize, waiters_max: usize, wait: Duration) -> HashPool {
        let workers = workers.clamp(1, HASH_WORKERS_MAX);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = 0;
        for index in 0..workers {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new().name(format!("kassa-argon2-{index}")).spawn(move || {
                let mut scratch = Scratch::default();
                loop {
                    // The lock is held only to take the next job, never while running it.
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut scratch),
                        Err(_) => return, // the pool is gone
                    }
                }
            });
            match spawned {
                Ok(_) => started += 1,
                // Fewer workers than asked is still a bounded pool (with none, callers are busy).
                Err(error) => tracing::error!(%error, "cannot start an Argon2 worker thread"),
            }
        }
        // One permit per worker that runs, so a job never waits for a thread that is not there.
        let workers = started;
        let inner = Arc::new(Inner {
            jobs: Mutex::new(sender),
            permits: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            waiters_max,
            wait,
            workers,
            dummy: OnceLock::new(),
            jobs_run: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        // Made ahead of the first unknown name, so that one is not slower than the rest.
        let warm = Arc::downgrade(&inner);
        let _ = submit(
            &inner,
            Box::new(move |scratch| {
                if let Some(inner) = warm.upgrade() {
                    dummy_hash(&inner, scratch);
                }
            }),
        );
        HashPool { inner }
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Argon2 computations run so far (each hash or verification is one).
    pub fn jobs_run(&self) -> u64 {
        self.inner.jobs_run.load(Ordering::Relaxed)
    }

    /// Callers refused with [`AuthError::Busy`] so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// A worker for one act: at once if one is free, else after waiting at most the pool's
    /// deadline behind at most its number of waiters; otherwise [`AuthError::Busy`].
    pub async fn permit(&self) -> Result<HashPermit, AuthError> {
        let inner = &self.inner;
        if let Ok(permit) = inner.permits.clone().try_acquire_owned() {
            return Ok(HashPermit::new(inner, permit));
        }
        let admitted = inner
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < inner.waiters_max).then_some(n + 1))
            .is_ok();
        if !admitted {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AuthError::Busy { retry_after_s: BUSY_RETRY_AFTER_S });
        }
        let waited = tokio::time::timeout(inner.wait, inner.permits.clone().acquire_owned()).await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(HashPermit::new(inner, permit)),
            // Timed out (or the semaphore closed, which never happens).
            _ => {
                inner.refused.fetch_add(1, Ordering::Relaxed);
                Err(AuthError::Busy { retry_after_s: BUSY_RETRY_AFTER_S })
            }
        }
    }
}

fn submit(inner: &Inner, job: Job) -> Result<(), AuthError> {
    let sender = inner.jobs.lock().map_err(|_| AuthError::Hash(HashError::Hashing))?;
    sender.send(job).map_err(|_| AuthError::Hash(HashError::Hashing))
}

/// The dummy hash: a random password nobody knows, hashed with the same parameters as real ones.
fn dummy_hash<'a>(inner: &'a Inner, scratch: &mut Scratch) -> &'a str {
    inner.dummy.get_or_init(|| {
        let random = crate::service::random_hex(32);
        inner.jobs_run.fetch_add(1, Ordering::Relaxed);
        // Hashing with valid parameters does not fail; should it, an unparsable dummy still makes
        // the verification below fail (and cost less, which a log line then explains).
        scratch.hash_password(&random).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot make the dummy Argon2 hash");
            String::new()
        })
    })
}

/// The right to run Argon2 on the pool for one act. Dropping it frees the worker once its
/// last job has finished.
pub struct HashPermit {
    inner: Arc<Inner>,
    permit: Arc<OwnedSemaphorePermit>,
}

impl fmt::Debug for HashPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashPermit")
    }
}

impl HashPermit {
    fn new(inner: &Arc<Inner>, permit: OwnedSemaphorePermit) -> HashPermit {
        HashPermit { inner: inner.clone(), permit: Arc::new(permit) }
    }

    /// Runs `work` on a worker and waits for its result. The job keeps the permit alive until it
    /// ends, even if this future is dropped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Scratch) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (reply, answer) = oneshot::channel();
        let (inner, permit) = (self.inner.clone(), self.permit.clone());
        submit(
            &self.inner,
            Box::new(move |scratch| {
                inner.jobs_run.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(work(&inner, scratch));
                drop(permit);
            }),
        )?;
        answer.await.map_err(|_| AuthError::Hash(HashError::Hashing))
    }

    /// Checks `secret` against `stored`.
    pub(crate) async fn verify(
        &self,
        kind: SecretKind,
        pepper: &Pepper,
        stored: &str,
        secret: &str,
    ) -> Result<bool, AuthError> {
        let (pepper, stored, secret) = (pepper.clone(), stored.to_owned(), Zeroizing::new(secret.to_owned()));
        let verified = self
            .run(move |_, scratch| match kind {
                SecretKind::DigitCode => scratch.verify_digit_code(&pepper, &stored, &secret),
                SecretKind::Password => scratch.verify_password(&stored, &secret),
            })
            .await?;
        Ok(verified?)
    }

    /// Checks `secret` against the dummy hash: the same work as [`verify`](Self::verify) for an
    /// account that does not exist. Always `false`.
    pub(crate) async fn verify_unknown(
        &self,
        kind: SecretKind,
        pepper: &Pepper,
        secret: &str,
    ) -> Result<(), AuthError> {
        let (pepper, secret) = (pepper.clone(), Zeroizing::new(secret.to_owned()));
        self.run(move |inner, scratch| {
            let stored = dummy_hash(inner, scratch);
            // The result is ignored: nobody knows the dummy's password, and nothing may depend on it.
            let _ = match kind {
                SecretKind::DigitCode => scratch.verify_digit_code(&pepper, stored, &secret),
                SecretKind::Password => scratch.verify_password(stored, &secret),
            };
        })
        .await
    }

    /// Hashes `secret` for storage.
    pub(crate) async fn hash(&self, kind: SecretKind, pepper: &Pepper, secret: &str) -> Result<String, AuthError> {
        let (pepper, secret) = (pepper.clone(), Zeroizing::new(secret.to_owned()));
        let hashed = self
            .run(move |_, scratch| match kind {
                SecretKind::DigitCode => scratch.hash_digit_code(&pepper, &secret),
                SecretKind::Password => scratch.hash_password(&secret),
            })
            .await?;
        Ok(hashed?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use kassa_crypto::MasterKey;

    use super::*;

    fn pepper() -> Pepper {
        MasterKey::from_bytes([5; 32]).pepper()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn refuses_beyond_its_workers_and_waiters() {
        let pool = HashPool::new(2, 3, Duration::from_secs(30));
        let first = pool.permit().await.unwrap();
        let second = pool.permit().await.unwrap();
        // Three may wait; a fourth is refused at once, without waiting.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.permit().await.map(|_| ()) })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.inner.waiting.load(Ordering::Acquire) < 3 {
            assert!(Instant::now() < deadline, "the waiters never queued");
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let refused = pool.permit().await.unwrap_err();
        assert!(matches!(refused, AuthError::Busy { retry_after_s: 1 }), "{refused:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
        assert_eq!(pool.refused(), 1);
        drop((first, second));
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_the_deadline() {
        let pool = HashPool::new(1, 4, Duration::from_millis(50));
        let held = pool.permit().await.unwrap();
        assert!(matches!(pool.permit().await, Err(AuthError::Busy { .. })));
        drop(held);
        pool.permit().await.unwrap();
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_cost_a_verification() {
        let pool = HashPool::new(1, 1, Duration::from_secs(30));
        let permit = pool.permit().await.unwrap();
        let pepper = pepper();
        let hash = permit.hash(SecretKind::Password, &pepper, "Kassa-Demo-2026!").await.unwrap();
        assert!(permit.verify(SecretKind::Password, &pepper, &hash, "Kassa-Demo-2026!").await.unwrap());
        assert!(!permit.verify(SecretKind::Password, &pepper, &hash, "nope").await.unwrap());
        let code = permit.hash(SecretKind::DigitCode, &pepper, "123456").await.unwrap();
        assert!(permit.verify(SecretKind::DigitCode, &pepper, &code, "123456").await.unwrap());
        let before = pool.jobs_run();
        permit.verify_unknown(SecretKind::Password, &pepper, "anything").await.unwrap();
        assert_eq!(pool.jobs_run(), before + 1);
        let dummy = pool.inner.dummy.get().unwrap();
        assert!(dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{dummy}");
        assert!(matches!(
            permit.verify(SecretKind::Password, &pepper, "not a hash", "x").await,
            Err(AuthError::Hash(HashError::MalformedHash))
        ));
    }

    #[tokio::test]
    async fn a_dropped_request_keeps_its_worker_until_the_job_ends() {
        let pool = HashPool::new(1, 0, Duration::from_millis(10));
        let permit = pool.permit().await.unwrap();
        let pepper = pepper();
        // Start a hash and abandon it at once (a client that disconnected).
        let abandoned = permit.hash(SecretKind::Password, &pepper, "Kassa-Demo-2026!");
        let _ = tokio::time::timeout(Duration::from_micros(1), abandoned).await;
        drop(permit);
        // The worker is still busy with it (19 MiB of Argon2 takes far longer than this).
        assert!(matches!(pool.permit().await, Err(AuthError::Busy { .. })), "freed before its job ended");
        let deadline = Instant::now() + Duration::from_secs(30);
        let again = loop {
            match pool.permit().await {
                Ok(permit) => break permit,
                Err(AuthError::Busy { .. }) => assert!(Instant::now() < deadline, "the worker never came back"),
                Err(other) => panic!("{other:?}"),
            }
            tokio::task::yield_now().await;
        };
        drop(again);
    }
}
