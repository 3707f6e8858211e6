//! The backends: each implements the core's traits over one database driver.

pub(crate) mod postgres;
pub(crate) mod sqlite;
