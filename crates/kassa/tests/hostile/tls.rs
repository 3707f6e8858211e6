//! (filled in by the tls work)
