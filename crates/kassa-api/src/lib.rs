//! The integrators' JSON API, `/api/v1`.
