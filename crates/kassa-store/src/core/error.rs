//! The store's one error type.

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the connection.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be read back (a bug or a damaged database).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A concurrent update won; re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The schema is missing, newer than this binary, or was changed after it was applied.
    #[error("schema: {0}")]
    Schema(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// The database answers but does not accept writes (a read-only file or directory, a
    /// PostgreSQL standby or a read-only session).
    #[error("database is read-only: {0}")]
    ReadOnly(String),
    /// The URL is not a `sqlite://` or `postgres://` URL.
    #[error("unsupported database URL (expected sqlite://PATH or postgres://…)")]
    UnsupportedUrl,
    /// The database did not answer in time (a read, a connection, a lock, or a write that was
    /// refused before it could commit): nothing of the operation was written. Retrying later is
    /// safe. Answered as "temporarily unavailable" (HTTP 503, ISO 8583 `96`).
    #[error("database timed out: {0}")]
    Timeout(String),
    /// A commit was sent to the database but no answer came within the deadline (or the
    /// connection broke while committing): the unit may or may not be on disk. Never report it
    /// as failed or declined to anyone who could act on that (no compensating write, no
    /// "nothing happened"): answer "temporarily unavailable" (HTTP 503, ISO 8583 `96`). The same
    /// unit sent again is safe: its guard (identity, version, idempotency key) makes the retry
    /// a `Duplicate` when the first one did commit, and a commit when it did not.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
}

impl StoreError {
    /// Whether the database is unavailable for now (unreachable, timed out, outcome unknown),
    /// as opposed to an answer about the data: the cases the servers answer with 503 / `96`.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable(_)
                | StoreError::Timeout(_)
                | StoreError::CommitUnknown(_)
                | StoreError::Closed
                | StoreError::ReadOnly(_)
        )
    }
}
