//! `kassa up` and `kassa serve`: the start-up sequence, in the order that keeps failures cheap.
//!
//! 1. raise the open-file limit, bind every listener (a taken port fails before anything is
//!    written), read the TLS certificate and key, check the card issuer's settings (issuer URL,
//!    zone PIN key);
//! 2. data directory and master key;
//! 3. open the store and migrate (`crate::store`), refuse to go on unless commits are durable;
//! 4. demo data: credentials file written first, then seeded (so a crash in between leaves a file
//!    that the next start regenerates, never a seeded database without its secrets);
//! 5. build the app and the simulators' server, print where everything is, serve until
//!    SIGINT/SIGTERM;
//! 6. drain every server (HTTP, ISO 8583 gateway, simulators) even when one of them failed, then
//!    report the first failure.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use kassa_crypto::MasterKey;
use kassa_server::tls::{self, TlsAcceptor};
use kassa_server::{App, AppDeps, Config, Listeners};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::demo::{self, DemoSecrets};
use crate::files;
use crate::gateway;
use crate::master_key::{self, WhenMissing};
use crate::qr;
use crate::sim;
use crate::store::{self, DemoState, Store};

/// Which command started the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `kassa up`: creates what is missing (data directory, master key).
    Up,
    /// `kassa serve`: expects the master key to exist.
    Serve,
}

/// Runs the host until it is stopped by a signal.
pub async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    // Before binding: the connection caps are sized by the limit in force.
    let open_files = kassa_server::serve::raise_open_files_limit();
    let http_connections_max = kassa_server::serve::connections_max_for(open_files);
    if http_connections_max < kassa_server::serve::HTTP_CONNECTIONS_MAX {
        tracing::warn!(
            open_files,
            http_connections_max,
            "the open-file limit caps each HTTP listener's connections; raise it (e.g. LimitNOFILE) for more"
        );
    }
    let mut listeners = Listeners::bind(&config).await?;
    let http_tls = http_tls(&config)?;
    let notifier = notifier(&config)?;
    // Installed before the slow steps (key generation) so that a signal during start-up stops the
    // host cleanly instead of killing it half-way through writing files.
    let shutdown = CancellationToken::new();
    kassa_server::shutdown::cancel_on_signals(shutdown.clone()).context("cannot install signal handlers")?;
    let remote_issuer = sim::remote_issuer_config(&config)?;
    let card_side = config.simulators || remote_issuer.is_some();
    let zone_pin_key = if card_side { Some(sim::zone_pin_key(&config)?) } else { None };
    files::create_private_dir(&config.data_dir)?;
    let _data_dir_lock = files::lock_data_dir(&config.data_dir, "starting another host on it")?;
    let when_missing = match mode {
        Mode::Up => WhenMissing::Create,
        Mode::Serve => WhenMissing::Fail,
    };
    let master_key = master_key::resolve(&config, when_missing)?;
    let store = store::open_and_migrate(&config).await?;
    store.ensure_durable().await?;
    if config.demo {
        prepare_demo(&config, &store, &master_key).await?;
    }

    let iso_listener = listeners.take_iso().context("the ISO 8583 listener was not bound")?;
    let iso_addr = iso_listener.local_addr().context("cannot read the ISO 8583 address")?;
    // One simulator serves both the simulators' address and, without a remote issuer, this
    // host's gateway, so its balances, PIN counters and reversals are the same either way.
    let simulator = match (&zone_pin_key, config.simulators) {
        (Some(key), true) => {
            Some(kassa_issuer::IssuerSimulator::new(key.key.clone(), Arc::new(kassa_issuer::SystemClock)))
        }
        _ => None,
    };
    let mut wallet_sim = None;
    let sim_server = match (listeners.take_sim(), &simulator) {
        (Some(listener), Some(simulator)) => {
            let addr = listener.local_addr().context("cannot read the simulators' address")?;
            let (wallets, task) = sim::start_wallet_sim(&config, addr, shutdown.clone())?;
            let router = sim::router(simulator.clone(), &wallets, shutdown.clone());
            wallet_sim = Some((wallets, task));
            Some((addr, listener, router))
        }
        _ => None,
    };
    // A host without simulators nor a remote issuer serves no card transactions rather than
    // approving them against a simulator.
    let card_issuer = sim::card_issuer(remote_issuer, simulator.as_ref())?;
    let zone_pin_description = zone_pin_key.as_ref().map(sim::ZonePinKey::describe);
    let gateway = match (&card_issuer, zone_pin_key) {
        (Some(issuer), Some(key)) => {
            Some(gateway::build(&config, store.inner(), &master_key, iso_listener, issuer.connector.clone(), key.key)?)
        }
        _ => {
            tracing::warn!("no card issuer is configured (issuer_url): the ISO 8583 gateway is not started");
            None
        }
    };
    let secure_cookies = http_tls.is_some();
    let qr_service = match qr::credentials(&config, wallet_sim.as_ref().map(|(wallets, _)| wallets))? {
        Some(credentials) => {
            let http_addr = listeners.http_addr().context("cannot read the HTTP address")?;
            let base = qr::public_base_url(&config, http_addr, secure_cookies)?;
            Some(qr::service(store.inner(), &credentials, &base, gateway::business_day(&config)?)?)
        }
        None => {
            tracing::warn!("no wallet credentials are configured (wallet_credentials): QR payments are off");
            None
        }
    };
    let merchant_notifier = merchant_notifier(&config, mode, &store, &master_key).await?;
    // The refund workflow (退款审核): approved QR refunds go out through the QR service.
    let refund_service = kassa_refund::RefundService::new(
        store.inner().clone(),
        qr_service.clone(),
        Arc::new(kassa_domain::clock::SystemClock),
        kassa_refund::RefundConfig { business_day: gateway::business_day(&config)?, ..Default::default() },
    );
    // /gateway.do refuses at once a notify_url the notification sender would never call.
    let notify_policy = merchant_notifier.as_ref().map(|sender| sender.policy().clone());
    // Reconciliation (对账): on demand in the back office, and daily once the providers' day closed.
    let reconciler = crate::recon::host_reconciler(
        &config,
        store.inner(),
        qr_service.clone(),
        wallet_sim.as_ref().map(|(wallets, _)| wallets),
        sim_server.as_ref().map(|(addr, _, _)| *addr),
    )?;
    let recon_notifier = notifier.clone();
    let web_notifier = notifier.clone();
    let (routes, auth_shared) = routes(
        &store,
        &master_key,
        secure_cookies,
        notifier,
        qr_service.clone(),
        refund_service.clone(),
        notify_policy,
    );
    // The back office's reconciliation routes, on the process's one hashing pool and counter.
    let recon_office = kassa_backoffice::BackOfficeState::new(
        store.inner().clone(),
        master_key.pepper(),
        Arc::new(kassa_auth::SystemClock),
        recon_notifier,
        auth_shared.clone(),
    )
    .with_secure_cookies(secure_cookies);
    // Corrections (补登) and merchant payouts in the back office, on the same sessions.
    let routes =
        routes.merge(crate::payouts::routes(&config, store.inner(), qr_service.clone(), recon_office.clone())?);
    let routes = routes.merge(kassa_backoffice::recon::router(kassa_backoffice::recon::ReconRoutes::new(
        recon_office,
        reconciler.clone(),
    )));
    // The back office's pages at `/`, on the same sessions.
    let routes = routes.merge(crate::web::routes(
        &config,
        store.inner(),
        &master_key,
        web_notifier,
        auth_shared.clone(),
        secure_cookies,
        crate::web::WebServices {
            qr: qr_service.clone(),
            refunds: refund_service.clone(),
            reconciler: reconciler.clone(),
            gateway: gateway.as_ref().map(|_| iso_addr),
        },
    )?);
    let deps = AppDeps {
        readiness: store.readiness(),
        registry: registry_with(&auth_shared, qr_service.clone(), merchant_notifier.clone(), store.inner()),
        store_durable: store.durable().await,
        shutdown: shutdown.clone(),
        routes,
        tls: http_tls,
    };
    let app = App::new(listeners, deps).context("cannot start the http server")?;

    // Everything is built: from here nothing returns before every server has stopped.
    let sim_addr = sim_server.as_ref().map(|(addr, _, _)| *addr);
    let sim_task = sim_server.map(|(_, listener, router)| {
        tokio::spawn(kassa_server::serve_until_stopped(listener, router, shutdown.clone(), "simulators"))
    });
    let gateway_task = gateway.map(|gateway| tokio::spawn(gateway.run(shutdown.clone())));
    let notify_task = merchant_notifier.map(|notifier| {
        let stop = shutdown.clone();
        tokio::spawn(async move { notifier.run(stop.cancelled_owned()).await })
    });
    let resolver_task = qr_service.map(|service| {
        let stop = shutdown.clone();
        tokio::spawn(async move { service.run_resolver(stop.cancelled_owned()).await })
    });
    let refund_task = {
        let stop = shutdown.clone();
        tokio::spawn(async move { refund_service.run_resolver(stop.cancelled_owned()).await })
    };
    let recon_task = {
        let stop = shutdown.clone();
        tokio::spawn(async move { reconciler.run_schedule(stop.cancelled_owned()).await })
    };
    // The dashboard's roll-up: stops with the token, holds nothing to drain (what it wrote is committed).
    tokio::spawn(crate::rollup::run(
        store.inner().clone(),
        Arc::new(kassa_domain::clock::SystemClock),
        shutdown.clone().cancelled_owned(),
    ));
    let card = card_issuer.map(|issuer| issuer.description).zip(zone_pin_description);
    print_banner(&config, &app.http_url(), gateway_task.is_some().then_some(iso_addr), sim_addr, card);
    let served = app.run_until_stopped().await.context("the http server failed");
    // Whatever ended the HTTP side, every other server stops too and is drained before the
    // process exits: the gateway finishes its in-flight answers.
    shutdown.cancel();
    let mut outcomes = vec![served];
    if let Some(task) = gateway_task {
        outcomes.push(drained(task.await, "the ISO 8583 gateway"));
    }
    if let Some(task) = sim_task {
        outcomes.push(drained(task.await, "the simulators' server"));
    }
    if let Some(task) = notify_task {
        if let Err(error) = task.await {
            outcomes.push(Err(anyhow::anyhow!("the merchant notification sender stopped abnormally: {error}")));
        }
    }
    if let Some(task) = resolver_task {
        if let Err(error) = task.await {
            outcomes.push(Err(anyhow::anyhow!("the QR resolver stopped abnormally: {error}")));
        }
    }
    if let Err(error) = refund_task.await {
        outcomes.push(Err(anyhow::anyhow!("the refund resolver stopped abnormally: {error}")));
    }
    if let Err(error) = recon_task.await {
        outcomes.push(Err(anyhow::anyhow!("the reconciliation schedule stopped abnormally: {error}")));
    }
    if let Some((_, task)) = wallet_sim {
        if let Err(error) = task.await {
            outcomes.push(Err(anyhow::anyhow!("the wallet simulator stopped abnormally: {error}")));
        }
    }
    // The refusals counted since the last window reach the audit log before the process ends.
    match auth_shared.flush().await {
        Ok(rows) => tracing::debug!(rows, "refusal counts audited"),
        Err(error) => outcomes.push(Err(anyhow::anyhow!("cannot audit the last refusal counts: {error}"))),
    }
    // The first failure is the one reported; the others are logged so none is lost.
    let mut failures = outcomes.into_iter().filter_map(Result::err);
    let first = failures.next();
    for other in failures {
        tracing::error!("{other:#}");
    }
    match first {
        Some(error) => Err(error),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// A server task's end as one result, named by `what`.
fn drained<E>(joined: Result<Result<(), E>, tokio::task::JoinError>, what: &str) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match joined {
        Ok(result) => result.with_context(|| format!("{what} failed")),
        Err(error) => Err(anyhow::anyhow!("{what} stopped abnormally: {error}")),
    }
}

/// The HTTP listener's TLS acceptor when `tls_cert`/`tls_key` are set (ALPN http/1.1).
fn http_tls(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::acceptor(cert, key, &[tls::ALPN_HTTP_1_1])?)),
        _ => Ok(None),
    }
}

/// Where one-time codes go: mail through `smtp_url` (TLS unless it is a relay on this machine),
/// else `<data-dir>/outbox.txt`, the development sink (never the log); a phone contact by SMS
/// through `sms_url` (API key in `KASSA_SMS_API_KEY`) when set. Checked before anything is
/// written.
fn notifier(config: &Config) -> anyhow::Result<Arc<dyn kassa_auth::notify::Notifier>> {
    use kassa_auth::notify::{ByRecipient, HttpSmsNotifier, MailFileNotifier, SmsConfig, SmtpConfig, SmtpNotifier};
    let mail: Arc<dyn kassa_auth::notify::Notifier> = match &config.smtp_url {
        None => Arc::new(MailFileNotifier::new(config.data_dir.join(OUTBOX_FILE))),
        Some(url) => {
            let from =
                config.smtp_from.as_deref().context("smtp_url needs smtp_from (KASSA_SMTP_FROM), the From address")?;
            Arc::new(SmtpNotifier::new(&SmtpConfig::from_url(url, from)?)?)
        }
    };
    let Some(url) = &config.sms_url else {
        return Ok(mail);
    };
    // The key is a secret: from the environment only, never a file or the Config's Debug.
    let api_key = std::env::var(kassa_server::config::env::SMS_API_KEY)
        .ok()
        .filter(|key| !key.trim().is_empty())
        .context("sms_url needs KASSA_SMS_API_KEY, the gateway's API key")?;
    let sms = HttpSmsNotifier::new(&SmsConfig {
        url: url.clone(),
        api_key: zeroize::Zeroizing::new(api_key.trim().to_owned()),
        timeout_ms: kassa_auth::notify::SMS_TIMEOUT_MS,
        extra_roots: Vec::new(),
    })?;
    Ok(Arc::new(ByRecipient::new(mail, Some(Arc::new(sms)))))
}

/// The HTTP routes besides the operational ones: TMS and the back-office API, with the process's
/// one hashing pool and refusal counter, whose counts are flushed at shutdown.
fn routes(
    store: &Store,
    master_key: &MasterKey,
    secure_cookies: bool,
    notifier: Arc<dyn kassa_auth::notify::Notifier>,
    qr_service: Option<kassa_qr::QrService>,
    refunds: kassa_refund::RefundService,
    notify_policy: Option<kassa_aggregator::NotifyUrlPolicy>,
) -> (axum::Router, kassa_auth::AuthShared) {
    let clock: Arc<dyn kassa_auth::Clock> = Arc::new(kassa_auth::SystemClock);
    // ONE Argon2id pool and ONE refusal counter for every surface of the process.
    let shared = kassa_auth::AuthShared::new(store.inner().clone(), clock.clone());
    let tms = kassa_tms::TmsState::new(store.inner().clone(), master_key.clone(), clock.clone(), shared.clone());
    let back_office = kassa_backoffice::BackOfficeState::new(
        store.inner().clone(),
        master_key.pepper(),
        clock.clone(),
        notifier,
        shared.clone(),
    );
    let back_office = back_office.with_secure_cookies(secure_cookies);
    let refund_routes =
        kassa_backoffice::refunds::RefundRoutes::new(back_office.clone(), refunds.clone(), store.inner().clone());
    // The integrators' API (/api/v1, /api/openapi.json): its QR routes when the host has wallets.
    let api_auth = kassa_auth::Auth::new(store.inner().clone(), master_key.pepper(), clock.clone(), shared.clone());
    let api = kassa_api::ApiState::new(api_auth, qr_service.clone(), clock.clone()).with_refunds(refunds);
    let mut router = kassa_tms::router(tms.clone())
        .merge(kassa_backoffice::router(back_office))
        .merge(kassa_backoffice::refunds::router(refund_routes))
        .merge(kassa_api::router(api));
    if let Some(service) = qr_service {
        // The Alipay-compatible gateway (/gateway.do), answering signed with the sealed gateway key.
        let mut gateway = kassa_aggregator::GatewayState::new(
            store.inner().clone(),
            service.clone(),
            master_key.clone(),
            clock.clone(),
        );
        if let Some(policy) = notify_policy {
            gateway = gateway.with_notify_policy(policy);
        }
        router = router.merge(kassa_aggregator::router(gateway));
        router = router
            .merge(kassa_tms::qr::router(kassa_tms::qr::TmsQrState::new(tms, service.clone())))
            .merge(kassa_qr::routes::router(service));
    }
    (router, shared)
}

/// The sender of the gateway's merchant notifications, signing with the gateway's key; `None`
/// (notifications stay in the outbox) when the database holds no gateway key. Loopback
/// `notify_url`s are allowed under `kassa up`, besides `notify_url_allow`.
async fn merchant_notifier(
    config: &Config,
    mode: Mode,
    store: &Store,
    master_key: &MasterKey,
) -> anyhow::Result<Option<kassa_aggregator::Notifier>> {
    let key = kassa_aggregator::load_signing_key(store.inner(), master_key)
        .await
        .context("cannot load the gateway's signing key")?;
    let Some(key) = key else {
        tracing::info!("no gateway signing key in the database: merchant notifications are not sent");
        return Ok(None);
    };
    let policy = kassa_aggregator::NotifyUrlPolicy::new(mode == Mode::Up, &config.notify_url_allow)?;
    let clock: Arc<dyn kassa_domain::clock::Clock> = Arc::new(kassa_domain::clock::SystemClock);
    let notifier = kassa_aggregator::Notifier::new(
        store.inner().clone(),
        Arc::new(key),
        policy,
        clock,
        kassa_aggregator::NotifyConfig::default(),
    )?;
    Ok(Some(notifier))
}

/// A metrics registry holding the password-hashing pool's figures, the store's group commits
/// (and the merchant notifications').
fn registry_with(
    shared: &kassa_auth::AuthShared,
    qr_service: Option<kassa_qr::QrService>,
    merchant_notifier: Option<kassa_aggregator::Notifier>,
    store: &kassa_store::Store,
) -> Registry {
    let mut registry = Registry::default();
    if let Some(notifier) = merchant_notifier {
        registry.register_collector(Box::new(kassa_aggregator::notify::NotifyCollector(notifier)));
    }
    registry.register_collector(Box::new(HashPoolMetrics(shared.hashing.clone())));
    registry.register_collector(Box::new(qr::QrMetrics(qr_service)));
    registry.register_collector(Box::new(CommitMetrics(store.committer.shared_stats())));
    registry
}

/// `kassa_store_commit_batches_total`, `kassa_store_commit_units_total` and
/// `kassa_store_commit_seconds_total`: the group committer's batches, the write units they held
/// and the time spent committing them, read from its counters at each scrape. Their ratios are
/// the host's own group-commit size and commit time (`kassa bench` reads them around its load).
///
/// Holds the counters only, not a sending side of the committer, so the registry never keeps
/// the writer running at shutdown.
#[derive(Debug)]
struct CommitMetrics(std::sync::Arc<kassa_store::CommitStats>);

impl prometheus_client::collector::Collector for CommitMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;

        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::registry::Unit;
        let stats = &self.0;
        // Three separate loads: a scrape may see one batch half counted, which the means over
        // many batches that readers take absorb.
        let batches = ConstCounter::new(stats.batches.load(Relaxed));
        batches.encode(encoder.encode_descriptor(
            "kassa_store_commit_batches",
            "Batches the group committer applied, one database transaction each",
            None,
            batches.metric_type(),
        )?)?;
        let units = ConstCounter::new(stats.units.load(Relaxed));
        units.encode(encoder.encode_descriptor(
            "kassa_store_commit_units",
            "Write units in those batches (a card sale is one, its decision; a block of request ids two more)",
            None,
            units.metric_type(),
        )?)?;
        // Microseconds as seconds: exact in an f64 for 285 years of commit time.
        let seconds = ConstCounter::new(stats.commit_micros.load(Relaxed) as f64 / 1e6);
        seconds.encode(encoder.encode_descriptor(
            "kassa_store_commit",
            "Time spent applying and committing those batches",
            Some(&Unit::Seconds),
            seconds.metric_type(),
        )?)?;
        Ok(())
    }
}

/// `kassa_argon2_workers`, `kassa_argon2_jobs_total` (hashes and verifications run) and
/// `kassa_argon2_refused_total` (callers answered 503 because the pool was full), read from the
/// pool at each scrape.
#[derive(Debug)]
struct HashPoolMetrics(kassa_auth::HashPool);

impl prometheus_client::collector::Collector for HashPoolMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let workers = ConstGauge::new(i64::try_from(self.0.workers()).unwrap_or(i64::MAX));
        workers.encode(encoder.encode_descriptor(
            "kassa_argon2_workers",
            "Argon2id worker threads of the password-hashing pool",
            None,
            workers.metric_type(),
        )?)?;
        let jobs = ConstCounter::new(self.0.jobs_run());
        jobs.encode(encoder.encode_descriptor(
            "kassa_argon2_jobs",
            "Argon2id hashes and verifications run",
            None,
            jobs.metric_type(),
        )?)?;
        let refused = ConstCounter::new(self.0.refused());
        refused.encode(encoder.encode_descriptor(
            "kassa_argon2_refused",
            "Callers refused (503) because the password-hashing pool was full",
            None,
            refused.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The development mail sink in the data directory.
pub const OUTBOX_FILE: &str = "outbox.txt";

/// Makes sure the demo data and its credentials file exist and agree.
async fn prepare_demo(config: &Config, store: &Store, master_key: &MasterKey) -> anyhow::Result<()> {
    let path = config.demo_credentials_path();
    match store.demo_state().await? {
        DemoState::Seeded => match demo::load(&path)? {
            Some(_existing) => tracing::info!(path = %path.display(), "reusing the demo credentials"),
            None => tracing::warn!(
                path = %path.display(),
                "the database holds demo data but the credentials file is gone; its secrets cannot be recovered \
                 (start with a fresh data directory to get new ones)"
            ),
        },
        DemoState::Foreign => tracing::warn!(
            "the database already holds data other than the demo: demo data is only seeded into an empty database"
        ),
        DemoState::Empty => {
            let secrets = tokio::task::spawn_blocking(|| DemoSecrets::generate(&mut rand::rngs::OsRng))
                .await
                .context("demo key generation stopped")??;
            demo::write(&path, &secrets)?;
            store.seed_demo(&secrets, master_key).await?;
            tracing::info!(path = %path.display(), "wrote new demo credentials");
        }
    }
    Ok(())
}

/// Tells the user where everything is; one `name: value` per line so scripts can read it. Never
/// prints a secret: the database URL displays masked.
#[expect(clippy::print_stdout, reason = "the URLs are the output `kassa up` is run for")]
fn print_banner(
    config: &Config,
    http_url: &str,
    iso: Option<SocketAddr>,
    sim: Option<SocketAddr>,
    card: Option<(String, String)>,
) {
    println!("kassa {} is up", kassa_server::metrics::VERSION);
    println!("http: {http_url}");
    println!("back_office: {http_url}/");
    match iso {
        Some(iso) => println!("iso: {iso}"),
        None => println!("iso: {} (not served: no card issuer configured)", config.iso),
    }
    if let Some(sim) = sim {
        println!("sim: http://{sim}");
    }
    if let Some((issuer, zone_pin_key)) = card {
        println!("issuer: {issuer}");
        println!("zone_pin_key: {zone_pin_key}");
    }
    println!("database: {}", config.database_url);
    if config.demo {
        println!("credentials: {}", config.demo_credentials_path().display());
    }
    println!("stop with Ctrl-C");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_failed_or_panicked_is_named_in_the_error() {
        let stopped = tokio::spawn(async { Ok::<(), std::io::Error>(()) }).await;
        assert!(drained(stopped, "the simulators' server").is_ok());
        let failed = tokio::spawn(async { Err::<(), _>(std::io::Error::other("listener gone")) }).await;
        let error = drained(failed, "the ISO 8583 gateway").unwrap_err();
        assert_eq!(format!("{error:#}"), "the ISO 8583 gateway failed: listener gone");
        let panicked = tokio::spawn(async {
            if true {
                panic!("a bug");
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        let error = drained(panicked, "the simulators' server").unwrap_err();
        assert!(error.to_string().starts_with("the simulators' server stopped abnormally"), "{error}");
    }

    /// The value of the sample `name` in a Prometheus text scrape.
    fn sample(text: &str, name: &str) -> f64 {
        let value = text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' '));
        value.and_then(|value| value.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    async fn the_commit_counters_grow_with_each_commit(db: &kassa_store::testing::TestDb) {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(CommitMetrics(db.store.committer.shared_stats())));
        let before = scrape(&registry);
        assert!(before.contains("# TYPE kassa_store_commit_seconds counter"), "{before}");
        let setting = |name: &str| kassa_store::WriteOp::PutSetting {
            scope: "platform".into(),
            name: name.into(),
            value: serde_json::json!(1),
            at_ms: 0,
        };
        db.store.commit(kassa_store::WriteUnit::ops(vec![setting("a")])).await.unwrap();
        db.store.commit(kassa_store::WriteUnit::ops(vec![setting("b")])).await.unwrap();
        // The committer counts a batch before answering its units: no wait needed.
        let after = scrape(&registry);
        let grew = |name: &str| sample(&after, name) - sample(&before, name);
        // Each commit waited for before the next is sent: a batch each.
        assert_eq!(grew("kassa_store_commit_batches_total"), 2.0, "{before}\n{after}");
        assert_eq!(grew("kassa_store_commit_units_total"), 2.0, "{before}\n{after}");
        assert!(grew("kassa_store_commit_seconds_total") > 0.0, "{before}\n{after}");
    }

    kassa_store::both_backends!(the_commit_counters_grow_with_each_commit);
}
