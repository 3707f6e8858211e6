//! The database budget of one request: how long it may wait on the store before the terminal
//! gets `96`. Waits that are not the database's (the issuer, a duplicate waiting for its
//! original) are run [`paused`]: they have their own bounds.
//!
//! The request is abandoned when its budget is spent, wherever it is. That is safe because
//! every write is one atomic unit and every stage a request can stop at is one a crash can stop
//! it at: a unit abandoned in the committer either commits or not, never in part; a card request
//! left `pending` (journaled, its answer not recorded) is declined and reversed at the issuer by
//! the sweep for requests a stopped host left (`handler::recovery::IssuerReverser`), so host and issuer
//! agree whatever the terminal was told.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    /// The budget of the request the current task is answering (none in background tasks).
    static BUDGET: Budget;
}

#[derive(Debug, Clone)]
struct Budget {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// When the budget is spent, as long as nothing is paused.
    deadline: Instant,
    /// Since when a pause runs.
    paused_since: Option<Instant>,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `None` when the budget is spent, else the earliest instant it can be.
    fn spent_or_next_check(&self, now: Instant) -> Option<Instant> {
        let state = self.lock();
        match state.paused_since {
            // However long the pause lasts, the budget left at its start is still left.
            Some(since) => Some(now + state.deadline.saturating_duration_since(since)),
            None if state.deadline <= now => None,
            None => Some(state.deadline),
        }
    }
}

/// Runs `request` with `budget` of database time; `None` when the budget was spent first.
pub(crate) async fn within<F: Future>(budget: Duration, request: F) -> Option<F::Output> {
    let budget =
        Budget { state: Arc::new(Mutex::new(State { deadline: Instant::now() + budget, paused_since: None })) };
    let request = BUDGET.scope(budget.clone(), request);
    tokio::pin!(request);
    let mut check = match budget.spent_or_next_check(Instant::now()) {
        Some(at) => at,
        None => return None,
    };
    loop {
        tokio::select! {
            output = &mut request => return Some(output),
            () = tokio::time::sleep_until(check) => match budget.spent_or_next_check(Instant::now()) {
                Some(at) => check = at,
                None => return None,
            },
        }
    }
}

/// Runs `wait` without spending the current request's budget (nested pauses count once).
pub(crate) async fn paused<F: Future>(wait: F) -> F::Output {
    let Ok(budget) = BUDGET.try_with(Budget::clone) else { return wait.await };
    let started = {
        let mut state = budget.lock();
        if state.paused_since.is_some() {
            None
        } else {
            let now = Instant::now();
            state.paused_since = Some(now);
            Some(now)
        }
    };
    let output = wait.await;
    if let Some(started) = started {
        let mut state = budget.lock();
        state.deadline += started.elapsed();
        state.paused_since = None;
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_within_its_budget_completes() {
        let answer = within(Duration::from_secs(3), async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            7
        })
        .await;
        assert_eq!(answer, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_budget_is_abandoned_on_time() {
        let started = Instant::now();
        let answer = within(Duration::from_secs(3), std::future::pending::<()>()).await;
        assert_eq!(answer, None);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn paused_waits_do_not_count() {
        let started = Instant::now();
        let answer = within(Duration::from_secs(3), async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            paused(tokio::time::sleep(Duration::from_secs(10))).await;
            paused(paused(tokio::time::sleep(Duration::from_secs(5)))).await;
            tokio::time::sleep(Duration::from_millis(900)).await;
            1
        })
        .await;
        assert_eq!(answer, Some(1));
        let spent = within(Duration::from_secs(3), async {
            paused(tokio::time::sleep(Duration::from_secs(10))).await;
            std::future::pending::<()>().await;
        })
        .await;
        assert_eq!(spent, None);
        assert_eq!(started.elapsed(), Duration::from_millis(2_900 + 15_000 + 13_000));
    }
}
