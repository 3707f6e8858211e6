//! The backend-independent core of the store: the group committer and the write units it
//! applies, the SQL value model, the records, the shared read SQL and the migrations.
//!
//! **Boundary**: nothing here names a database driver; the backends (`crate::backend`)
//! implement the core's traits with one.

pub(crate) mod committer;
pub(crate) mod error;
pub(crate) mod migrate;
pub(crate) mod queries;
pub(crate) mod records;
pub(crate) mod stores;
pub(crate) mod unit;
pub(crate) mod value;
