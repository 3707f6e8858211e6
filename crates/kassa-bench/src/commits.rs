//! The host's own group commits during a bench run, from its `/metrics` counters
//! (`kassa_store_commit_batches_total`, `kassa_store_commit_units_total`,
//! `kassa_store_commit_seconds_total`, docs/reference/http.md) read just before and just
//! after the load: how many batches the committer formed, how large, and how long each took.
//! The physical phase ([`crate::physical`]) runs at the batch size found here, so that the
//! physical limit is the one of the run's own batches.

use std::net::SocketAddr;

use serde::Serialize;

use crate::BenchError;

/// Batches committed, the write units they held and the time spent committing them.
const BATCHES: &str = "kassa_store_commit_batches_total";
const UNITS: &str = "kassa_store_commit_units_total";
const SECONDS: &str = "kassa_store_commit_seconds_total";

/// The host's group-commit counters at one scrape (they only grow while the host runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitCounters {
    /// Batches committed, one database transaction each.
    pub batches: u64,
    /// Write units in those batches.
    pub units: u64,
    /// Time spent committing them, seconds.
    pub seconds: f64,
}

impl CommitCounters {
    /// Reads the counters from the host's `GET /metrics`. A host without them (one older than
    /// these metrics) is a [`BenchError::Metrics`] naming the missing one.
    pub async fn read(http: SocketAddr) -> Result<CommitCounters, BenchError> {
        CommitCounters::parse(&crate::http_get(http, "/metrics").await?)
    }

    /// The counters of a Prometheus text scrape.
    pub fn parse(text: &str) -> Result<CommitCounters, BenchError> {
        let value = |name: &str| {
            crate::metric_sample(text, name).ok_or_else(|| BenchError::Metrics(format!("no {name} in /metrics")))
        };
        let bad = |name: &str, value: &str| BenchError::Metrics(format!("{name} is not a count: {value}"));
        let count = |name: &str| {
            let text = value(name)?;
            // The exposition writes integer counters as integers; a float one is read as such.
            text.parse::<u64>().or_else(|_| match text.parse::<f64>() {
                Ok(number) if number.is_finite() && number >= 0.0 && number.fract() == 0.0 => Ok(number as u64),
                _ => Err(bad(name, text)),
            })
        };
        let seconds = value(SECONDS)?;
        let seconds = match seconds.parse::<f64>() {
            Ok(number) if number.is_finite() && number >= 0.0 => number,
            _ => return Err(bad(SECONDS, seconds)),
        };
        Ok(CommitCounters { batches: count(BATCHES)?, units: count(UNITS)?, seconds })
    }
}

/// The host's group commits between two scrapes around the load (the `commits` object of the
/// report).
///
/// Units are not sales: the committer's unit is one write. A card sale is one (its decision
/// with the journal entry, under an id reserved before), but the reservation of a block of ids
/// and its close, declined sales, reversals and the host's own writes (audit, roll-ups) are units
/// too. The physical phase commits a whole minimal sale in one
/// transaction, so it is compared at the run's batch size counted in sales:
/// `sales_per_commit = units_per_commit × approved ÷ units`, the units of the window shared out
/// over the sales approved in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CommitsReport {
    /// Batches the host committed during the load.
    pub batches: u64,
    /// Write units in those batches.
    pub units: u64,
    /// `units / batches`: the mean group-commit size in units.
    pub units_per_commit: f64,
    /// The mean group-commit size in approved sales (see above); the physical phase runs at it,
    /// rounded.
    pub sales_per_commit: f64,
    /// Mean time of one batch, applying and committing it, milliseconds.
    pub commit_ms_mean: f64,
}

impl CommitsReport {
    /// The commits between `before` and `after`, with `approved` sales approved in between;
    /// `None` when the host committed nothing (or restarted: its counters went back).
    pub fn of_window(before: CommitCounters, after: CommitCounters, approved: u64) -> Option<CommitsReport> {
        let batches = after.batches.checked_sub(before.batches).filter(|&batches| batches > 0)?;
        let units = after.units.checked_sub(before.units).filter(|&units| units > 0)?;
        let seconds = (after.seconds - before.seconds).max(0.0);
        let units_per_commit = units as f64 / batches as f64;
        Some(CommitsReport {
            batches,
            units,
            units_per_commit: crate::round3(units_per_commit),
            sales_per_commit: crate::round3(units_per_commit * approved as f64 / units as f64),
            commit_ms_mean: crate::round3(seconds * 1e3 / batches as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const SCRAPE: &str = "# HELP kassa_store_commit_batches Batches\n\
        # TYPE kassa_store_commit_batches counter\n\
        kassa_store_commit_batches_total 10\n\
        kassa_store_commit_units_total 315\n\
        # UNIT kassa_store_commit_seconds seconds\n\
        kassa_store_commit_seconds_total 0.25\n\
        kassa_store_durable 1\n\
        # EOF\n";

    #[test]
    fn the_counters_are_read_from_a_scrape() {
        let counters = CommitCounters::parse(SCRAPE).unwrap();
        assert_eq!(counters, CommitCounters { batches: 10, units: 315, seconds: 0.25 });
        let missing = CommitCounters::parse("kassa_store_durable 1\n").unwrap_err();
        assert!(missing.to_string().contains("kassa_store_commit_seconds_total"), "{missing}");
        let bad = CommitCounters::parse(&SCRAPE.replace(" 315", " -3")).unwrap_err();
        assert!(bad.to_string().contains("not a count"), "{bad}");
    }

    #[test]
    fn sales_per_commit_shares_the_units_out_over_the_approved_sales() {
        let before = CommitCounters { batches: 10, units: 315, seconds: 0.25 };
        // 100 batches of 31.5 units, 1 575 sales approved, at two units each as when a sale
        // was a pending row and its decision: 15.75 sales per commit.
        let after = CommitCounters { batches: 110, units: 3_465, seconds: 0.75 };
        let report = CommitsReport::of_window(before, after, 1_575).unwrap();
        assert_eq!(report.batches, 100);
        assert_eq!(report.units, 3_150);
        assert_eq!(report.units_per_commit, 31.5);
        assert_eq!(report.sales_per_commit, 15.75);
        assert_eq!(report.commit_ms_mean, 5.0);
        assert_eq!(CommitsReport::of_window(before, before, 0), None, "no commit in the window");
        let restarted = CommitCounters { batches: 1, units: 2, seconds: 0.01 };
        assert_eq!(CommitsReport::of_window(before, restarted, 1), None, "the counters went back");
    }
}
