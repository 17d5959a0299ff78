//! Outside programs run from async tests: on a blocking thread, with a bound.

use std::process::{Command, Output};
use std::time::Duration;

/// Runs `command` to completion on a blocking thread, waiting at most `limit`; panics,
/// naming `what`, if it cannot start or does not finish in time. The program's own bounds
/// come first; this one is the backstop.
pub async fn output_within(mut command: Command, limit: Duration, what: &str) -> Output {
    tokio::time::timeout(limit, tokio::task::spawn_blocking(move || command.output()))
        .await
        .unwrap_or_else(|_| panic!("{what} finishes within {limit:?}"))
        .expect("the blocking task does not panic")
        .unwrap_or_else(|error| panic!("run {what}: {error}"))
}
