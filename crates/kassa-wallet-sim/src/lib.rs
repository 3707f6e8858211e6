//! The wallet simulator (work in progress).
