//! (filled in by the database work)
