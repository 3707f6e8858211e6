//! (filled in by the iso work)
