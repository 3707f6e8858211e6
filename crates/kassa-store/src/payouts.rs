//! Filled in by the change that introduces it.
