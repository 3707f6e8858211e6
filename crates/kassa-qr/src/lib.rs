//! The QR payment service (work in progress).
