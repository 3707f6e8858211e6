//! The dashboard (概览): payments per channel per business day over the last 14 days (count,
//! amount, success rate), the latency of QR payments, and what waits for someone (QR trades
//! whose outcome is unknown, refund requests to review, proposed corrections, open
//! reconciliation differences), each tile linking to its page. Merchant users see their
//! merchant's figures; the institution's staff see the platform's.
//!
//! The figures are read on each request from the dashboard's roll-up (`kassa_store::rollup`,
//! kept by the host's background task) plus the records changed since it last ran
//! (`kassa_store::web`), so they are exact: a refund or a correction shows at once.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kassa_domain::calendar::BusinessDay;
use kassa_domain::CivilDate;
use kassa_store::web::{DayVolume, LatencyHistogram, Outcome, PendingCounts, LATENCY_BUCKETS_MS};

use crate::chart::{self, Chart, Series};
use crate::format::{self, money};
use crate::i18n::Lang;
use crate::page::{render, Chrome, PageError, Viewer};
use crate::pages::transactions::VIEWERS;
use crate::WebState;

/// Business days the dashboard covers, today included.
pub const DAYS: i64 = 14;
/// The currency the amount chart adds up (amounts in other currencies are listed, not drawn).
const CHART_CURRENCY: &str = "CNY";
/// The channels, in the order of the charts.
const CHANNELS: [&str; 3] = ["card", "alipay", "wechat"];

/// The routes of the dashboard.
pub fn routes() -> Router<WebState> {
    Router::new().route("/", get(dashboard))
}

/// A tile: a figure, what it is, where it leads.
#[derive(Debug)]
struct Tile {
    label: String,
    value: String,
    note: String,
    href: String,
    attention: bool,
}

/// One row of a chart's data table.
#[derive(Debug)]
struct TableRow {
    label: String,
    cells: Vec<String>,
}

/// A chart with its data table.
#[derive(Debug)]
struct Figure {
    title: String,
    svg: String,
    columns: Vec<String>,
    rows: Vec<TableRow>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    scope: String,
    volume_tiles: Vec<Tile>,
    pending_tiles: Vec<Tile>,
    figures: Vec<Figure>,
    latency_note: String,
    other_currencies: Vec<String>,
}

/// The figures of one channel over the days.
#[derive(Debug, Default, Clone)]
struct ChannelDays {
    succeeded: Vec<i64>,
    failed: Vec<i64>,
    amount_minor: Vec<i64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// Per mille of `part` in `whole`, `None` without a whole.
fn share(part: i64, whole: i64) -> Option<i64> {
    (whole > 0).then(|| i64::try_from(i128::from(part) * 1000 / i128::from(whole)).unwrap_or(0))
}

fn channel_label(lang: Lang, channel: &str) -> String {
    lang.t(&format!("transactions-channel-{channel}"))
}

fn cny(minor: i64) -> String {
    money(minor, CHART_CURRENCY)
}

fn count_text(value: i64) -> String {
    format::count(value)
}

fn share_text(value: i64) -> String {
    format::per_mille(value)
}

/// Adds up the volumes per channel and day; amounts of other currencies are named apart.
fn per_channel(volumes: &[DayVolume], days: &[String]) -> (Vec<ChannelDays>, Vec<(String, i64)>) {
    let empty =
        ChannelDays { succeeded: vec![0; days.len()], failed: vec![0; days.len()], amount_minor: vec![0; days.len()] };
    let mut channels = vec![empty; CHANNELS.len()];
    let mut others: Vec<(String, i64)> = Vec::new();
    for volume in volumes {
        let Some(day) = days.iter().position(|d| *d == volume.business_date) else { continue };
        let Some(channel) = CHANNELS.iter().position(|c| Some(*c) == volume.channel.as_deref()) else { continue };
        let figures = &mut channels[channel];
        match volume.outcome {
            Outcome::Succeeded => {
                figures.succeeded[day] = figures.succeeded[day].saturating_add(volume.count);
                if volume.currency == CHART_CURRENCY {
                    figures.amount_minor[day] = figures.amount_minor[day].saturating_add(volume.amount_minor);
                } else if let Some(other) = others.iter_mut().find(|(currency, _)| *currency == volume.currency) {
                    other.1 = other.1.saturating_add(volume.amount_minor);
                } else {
                    others.push((volume.currency.clone(), volume.amount_minor));
                }
            }
            Outcome::Failed => figures.failed[day] = figures.failed[day].saturating_add(volume.count),
            Outcome::Pending => {}
        }
    }
    (channels, others)
}

fn latency_text(lang: Lang, histogram: &LatencyHistogram, per_mille: i64) -> String {
    match histogram.quantile_bound_ms(per_mille) {
        None => lang.t("dashboard-no-data"),
        Some(Some(bound)) => lang.t1("dashboard-at-most", "duration", format::duration_ms(bound)),
        Some(None) => lang.t1(
            "dashboard-more-than",
            "duration",
            format::duration_ms(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]),
        ),
    }
}

fn figure(title: String, svg: String, days: &[String], series: &[Series], cell: fn(i64) -> String) -> Figure {
    Figure {
        title,
        svg,
        columns: series.iter().map(|s| s.label.clone()).collect(),
        rows: days
            .iter()
            .enumerate()
            .map(|(index, day)| TableRow {
                label: day.clone(),
                cells: series.iter().map(|s| cell(s.values.get(index).copied().unwrap_or(0))).collect(),
            })
            .collect(),
    }
}

fn pending_tiles(lang: Lang, institution: bool, pending: &PendingCounts) -> Vec<Tile> {
    let tile = |label: &str, value: i64, href: &str| Tile {
        label: lang.t(label),
        value: format::count(value),
        note: String::new(),
        href: href.to_owned(),
        attention: value > 0,
    };
    let mut tiles = vec![tile("dashboard-pending-qr", pending.qr_unknown, "/transactions?status=pending")];
    if institution {
        tiles.push(tile("dashboard-pending-refund-reviews", pending.refunds_awaiting_institution, "/refunds"));
        tiles.push(tile("dashboard-pending-corrections", pending.corrections_proposed, "/corrections"));
        tiles.push(tile("dashboard-pending-recon", pending.recon_open, "/recon"));
    } else {
        tiles.push(tile("dashboard-pending-refund-approvals", pending.refunds_awaiting_merchant, "/refunds"));
    }
    tiles
}

async fn dashboard(viewer: Viewer, State(state): State<WebState>) -> Result<Response, PageError> {
    viewer.require_role(VIEWERS)?;
    let lang = viewer.lang;
    let merchant = viewer.merchant_scope(None);
    let today = BusinessDay::default().date_of(now_ms());
    let first = CivilDate::from_days_since_epoch(today.days_since_epoch() - (DAYS - 1));
    let days: Vec<String> =
        (0..DAYS).map(|n| CivilDate::from_days_since_epoch(first.days_since_epoch() + n).to_string()).collect();
    let (date_from, date_to) = (first.to_string(), today.to_string());
    let web = state.store.web();
    let volumes = web.day_volumes(merchant, &date_from, &date_to).await?;
    let latency = web.qr_latency(merchant, &date_from, &date_to).await?;
    let pending = web.pending(merchant).await?;

    let (channels, others) = per_channel(&volumes, &days);
    let labels: Vec<String> = days.iter().map(|d| d.get(5..).unwrap_or(d).to_owned()).collect();
    let names: Vec<String> = CHANNELS.iter().map(|c| channel_label(lang, c)).collect();
    let series = |pick: &dyn Fn(&ChannelDays) -> Vec<i64>| -> Vec<Series> {
        channels
            .iter()
            .zip(&names)
            .map(|(figures, name)| Series { label: name.clone(), values: pick(figures) })
            .collect()
    };
    let counts = series(&|f| f.succeeded.clone());
    let amounts = series(&|f| f.amount_minor.clone());
    let rates = series(&|f| {
        f.succeeded.iter().zip(&f.failed).map(|(ok, failed)| share(*ok, ok + failed).unwrap_or(0)).collect()
    });

    let title = lang.t("dashboard-chart-count");
    let svg = chart::bars(&Chart { title: &title, x_labels: &labels, series: &counts, y_format: count_text });
    let mut figures = vec![figure(title, svg, &days, &counts, count_text)];
    let title = lang.t1("dashboard-chart-amount", "currency", CHART_CURRENCY);
    let svg = chart::bars(&Chart { title: &title, x_labels: &labels, series: &amounts, y_format: cny });
    figures.push(figure(title, svg, &days, &amounts, cny));
    let title = lang.t("dashboard-chart-success");
    let svg = chart::lines(&Chart { title: &title, x_labels: &labels, series: &rates, y_format: share_text });
    figures.push(figure(title, svg, &days, &rates, share_text));
    let bucket_labels: Vec<String> = LATENCY_BUCKETS_MS
        .iter()
        .map(|bound| format!("< {}", format::duration_ms(*bound)))
        .chain(std::iter::once(format!("≥ {}", format::duration_ms(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]))))
        .collect();
    let latency_series = vec![Series { label: lang.t("dashboard-qr-payments"), values: latency.counts.clone() }];
    let title = lang.t("dashboard-chart-latency");
    let svg =
        chart::bars(&Chart { title: &title, x_labels: &bucket_labels, series: &latency_series, y_format: count_text });
    figures.push(figure(title, svg, &bucket_labels, &latency_series, count_text));

    let last = days.len() - 1;
    let today_count: i64 = channels.iter().map(|f| f.succeeded[last]).sum();
    let today_amount: i64 = channels.iter().map(|f| f.amount_minor[last]).fold(0, i64::saturating_add);
    let total_count: i64 = channels.iter().flat_map(|f| f.succeeded.iter()).sum();
    let total_failed: i64 = channels.iter().flat_map(|f| f.failed.iter()).sum();
    let total_amount: i64 = channels.iter().flat_map(|f| f.amount_minor.iter()).fold(0, |a, b| a.saturating_add(*b));
    let today_href = format!("/transactions?date_from={date_to}&date_to={date_to}");
    let period_href = format!("/transactions?date_from={date_from}&date_to={date_to}");
    let volume_tiles = vec![
        Tile {
            label: lang.t("dashboard-today"),
            value: format::count(today_count),
            note: cny(today_amount),
            href: today_href,
            attention: false,
        },
        Tile {
            label: lang.t1("dashboard-period", "days", DAYS),
            value: format::count(total_count),
            note: cny(total_amount),
            href: period_href.clone(),
            attention: false,
        },
        Tile {
            label: lang.t("dashboard-success-rate"),
            value: share(total_count, total_count + total_failed)
                .map_or_else(|| lang.t("dashboard-no-data"), share_text),
            note: lang.t1("dashboard-failed", "count", format::count(total_failed)),
            href: format!("{period_href}&status=failed"),
            attention: false,
        },
        Tile {
            label: lang.t("dashboard-latency-p50"),
            value: latency_text(lang, &latency, 500),
            note: lang.t1("dashboard-latency-p95", "value", latency_text(lang, &latency, 950)),
            href: format!("{period_href}&channel=alipay"),
            attention: false,
        },
    ];
    let scope = match merchant {
        Some(merchant) => lang.t2("dashboard-scope-merchant", "merchant", merchant, "days", DAYS),
        None => lang.t1("dashboard-scope-platform", "days", DAYS),
    };
    let page = DashboardPage {
        chrome: viewer.chrome("dashboard-title"),
        scope,
        volume_tiles,
        pending_tiles: pending_tiles(lang, viewer.is_institution(), &pending),
        figures,
        latency_note: lang.t1("dashboard-latency-note", "count", format::count(latency.total())),
        other_currencies: others.iter().map(|(currency, minor)| money(*minor, currency)).collect(),
    };
    render(&page)
}
