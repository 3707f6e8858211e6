//! The screen UI's tests (snapshots and key sequences) follow in the next commit.
