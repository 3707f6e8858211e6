//! Which requests a listener takes: per-client rate limits on unauthenticated routes (`429`),
//! a concurrency limit that sheds (`503`), then the per-request bounds (time, body time, body
//! size). Applied by [`crate::serve::serve`] around every router, so no route crate needs to
//! know about it.
//!
//! The rate limit is GCRA (the "generic cell rate algorithm" of token buckets without a
//! refill task): one instant per client, the theoretical arrival time of its next request.
//! Hand-written rather than the `governor` crate: governor's keyed store has no bound on the
//! number of clients (it relies on a periodic `retain_recent`), and its dependencies
//! (dashmap, quanta, a second hashbrown) would be duplicates in the tree; the bound is the point.
//!
//! Clients are keyed by IP address, IPv6 by its /64 (one subscriber's prefix), so an address
//! cannot escape its limit by rotating through its own prefix.
//!
//! **Invariant**: per rule, at most [`RATE_LIMIT_CLIENTS_MAX`] clients are remembered; a client
//! whose bucket is full again is forgotten first. When every remembered client is still
//! limited, a new client is refused too (fail closed: these routes are the expensive ones).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::serve::{Limits, Refusal, ServeMetrics, RETRY_AFTER_BUSY_S};

/// Clients remembered per rate rule, at most (about 100 bytes each).
pub const RATE_LIMIT_CLIENTS_MAX: usize = 10_000;

/// Back-office logins per client address: a burst of 20, then one every 3 s. An office of
/// operators behind one address logs in far less often; a password guesser is slowed to 20 a
/// minute before the account lockout even starts.
pub const BACKOFFICE_LOGIN_BURST: u32 = 20;
/// See [`BACKOFFICE_LOGIN_BURST`].
pub const BACKOFFICE_LOGINS_PER_MINUTE: u32 = 20;

/// Password-reset requests and completions per client address: a burst of 5, then one a minute.
pub const BACKOFFICE_RESET_BURST: u32 = 5;
/// See [`BACKOFFICE_RESET_BURST`].
pub const BACKOFFICE_RESETS_PER_MINUTE: u32 = 1;

/// Signed terminal requests (`/tms/v1/`) per client address: generous, a shop's worth of
/// terminals share one address: a burst of 600, then 20 a second.
pub const TMS_BURST: u32 = 600;
/// See [`TMS_BURST`].
pub const TMS_REQUESTS_PER_MINUTE: u32 = 1_200;

/// One rate limit: requests matching `method` (any when `None`) and starting with `path_prefix`
/// are limited per client to a burst of `burst`, refilled at `per_minute`.
#[derive(Debug, Clone)]
pub struct RateRule {
    /// The method, or any.
    pub method: Option<Method>,
    /// The path prefix, e.g. `/tms/v1/`.
    pub path_prefix: &'static str,
    /// Requests a client may make at once after a quiet spell.
    pub burst: u32,
    /// Sustained requests per minute.
    pub per_minute: u32,
}

impl RateRule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|wanted| wanted == method) && path.starts_with(self.path_prefix)
    }
}

/// The rules every Kassa listener applies: the unauthenticated routes of the back office and the
/// signed terminal routes.
pub fn default_rate_rules() -> Vec<RateRule> {
    vec![
        RateRule {
            method: Some(Method::POST),
            path_prefix: "/backoffice/v1/login",
            burst: BACKOFFICE_LOGIN_BURST,
            per_minute: BACKOFFICE_LOGINS_PER_MINUTE,
        },
        RateRule {
            method: None,
            path_prefix: "/backoffice/v1/resets",
            burst: BACKOFFICE_RESET_BURST,
            per_minute: BACKOFFICE_RESETS_PER_MINUTE,
        },
        RateRule { method: None, path_prefix: "/tms/v1/", burst: TMS_BURST, per_minute: TMS_REQUESTS_PER_MINUTE },
    ]
}

/// `router` behind the admission checks and request bounds of `limits`.
pub(crate) fn layer(router: Router, limits: &Limits, metrics: ServeMetrics) -> Router {
    let admission = Arc::new(Admission {
        requests: Arc::new(Semaphore::new(limits.requests_in_flight_max)),
        limiters: limits.rate_rules.iter().cloned().map(RateLimiter::new).collect(),
        metrics,
    });
    // Layers run outermost last-added: admission first, then the time bounds, then the size.
    router
        .layer(RequestBodyLimitLayer::new(limits.request_body_bytes_max))
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
        .layer(axum::middleware::from_fn_with_state(admission, admit))
}

struct Admission {
    requests: Arc<Semaphore>,
    limiters: Vec<RateLimiter>,
    metrics: ServeMetrics,
}

async fn admit(State(admission): State<Arc<Admission>>, request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| client_key(peer.ip()));
    if let Some(client) = client {
        let now = Instant::now();
        for limiter in
            admission.limiters.iter().filter(|limiter| limiter.rule.matches(request.method(), request.uri().path()))
        {
            if let Err(wait) = limiter.check(client, now) {
                admission.metrics.refused(Refusal::RateLimited);
                return refusal(StatusCode::TOO_MANY_REQUESTS, wait.as_secs().saturating_add(1), "too many requests");
            }
        }
    }
    let Ok(_permit) = admission.requests.clone().try_acquire_owned() else {
        admission.metrics.refused(Refusal::Shed);
        return refusal(StatusCode::SERVICE_UNAVAILABLE, RETRY_AFTER_BUSY_S, "busy, retry");
    };
    let mut response = next.run(request).await;
    // A request that ran out of time (the request timeout's 503) or any other 503 without a
    // hint tells the client when to come back, like every other refusal of this layer.
    if response.status() == StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key(header::RETRY_AFTER) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_BUSY_S));
    }
    response
}

fn refusal(status: StatusCode, retry_after_s: u64, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// GCRA over a bounded map of clients.
struct RateLimiter {
    rule: RateRule,
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a client's theoretical arrival time may be: `interval * (burst - 1)`.
    tolerance: Duration,
    /// Client → theoretical arrival time of its next request.
    clients: Mutex<HashMap<IpAddr, Instant>>,
}

impl RateLimiter {
    fn new(rule: RateRule) -> RateLimiter {
        let interval = Duration::from_secs(60) / rule.per_minute.max(1);
        let tolerance = interval * rule.burst.max(1).saturating_sub(1);
        RateLimiter { rule, interval, tolerance, clients: Mutex::new(HashMap::new()) }
    }

    /// Takes one request of `client` at `now`; `Err(wait)` when it is over its rate.
    fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if !clients.contains_key(&client) && clients.len() >= RATE_LIMIT_CLIENTS_MAX {
            // Forget the clients whose bucket is full again: they are as if never seen.
            clients.retain(|_, arrival| *arrival > now);
            if clients.len() >= RATE_LIMIT_CLIENTS_MAX {
                return Err(self.interval);
            }
        }
        let arrival = clients.get(&client).copied().unwrap_or(now).max(now);
        let ahead = arrival.duration_since(now);
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        clients.insert(client, arrival + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(RateRule { method: None, path_prefix: "/", burst: 3, per_minute: 60 });
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check(ip("10.0.0.1"), start).unwrap();
        }
        let wait = limiter.check(ip("10.0.0.1"), start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        limiter.check(ip("10.0.0.2"), start).unwrap();
        limiter.check(ip("10.0.0.1"), start + Duration::from_secs(1)).unwrap();
        assert!(limiter.check(ip("10.0.0.1"), start + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_clients_are_forgotten_first() {
        let limiter = RateLimiter::new(RateRule { method: None, path_prefix: "/", burst: 1, per_minute: 60 });
        let start = Instant::now();
        for n in 0..u32::try_from(RATE_LIMIT_CLIENTS_MAX).unwrap() {
            limiter.check(IpAddr::from(n.to_be_bytes()), start).unwrap();
        }
        assert!(limiter.check(ip("192.0.2.1"), start).is_err(), "every remembered client is active: fail closed");
        let later = start + Duration::from_secs(2);
        limiter.check(ip("192.0.2.1"), later).unwrap();
        assert_eq!(limiter.clients.lock().unwrap().len(), 1, "the idle ones were forgotten");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn rules_match_by_method_and_prefix() {
        let rules = default_rate_rules();
        let matching = |method: Method, path: &str| rules.iter().filter(|rule| rule.matches(&method, path)).count();
        assert_eq!(matching(Method::POST, "/backoffice/v1/login"), 1);
        assert_eq!(matching(Method::GET, "/backoffice/v1/login"), 0);
        assert_eq!(matching(Method::POST, "/backoffice/v1/resets/abc/complete"), 1);
        assert_eq!(matching(Method::GET, "/tms/v1/parameters"), 1);
        assert_eq!(matching(Method::GET, "/healthz"), 0);
    }
}
