//! kassa-store's integration tests: the conformance suite, run on SQLite always and on
//! PostgreSQL when `KASSA_TEST_DATABASE_URL` is set (a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod auth;
mod conformance;
mod gateway;
mod harness;

harness::conformance!(
    migrations_are_idempotent_and_readiness_follows,
    directory_round_trips,
    card_identity_is_charged_once,
    trades_are_unique_per_merchant,
    a_duplicate_posts_nothing,
    stale_updates_are_refused,
    idempotency_keys_answer_once,
    concurrent_retransmissions_charge_once,
    a_bad_unit_fails_alone,
    audit_log_is_chained_and_append_only,
    ledger_matches_the_reference_model,
    history_cannot_be_edited,
    backup_while_writing_and_verified_restore,
    ledger_property_holds_on_the_store,
);
