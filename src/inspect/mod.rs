//! `pg-queue-scaler inspect`: the inspection service's answers in a terminal, without a
//! running server or KEDA. It uses the same settings layers and the same snapshot registry
//! as the server, so a table here shows what `ListQueues` would, and `--trigger` gives
//! exactly the explanation `Explain` would.

mod table;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Settings;
use crate::grpc::explain::{self, Outcome};
use crate::grpc::pgqueuescaler::v1;
use crate::metric_name::metric_name;
use crate::metrics::Metrics;
use crate::snapshot::Snapshots;
use crate::trigger::{self, Trigger};

/// What to print, and how.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct InspectArgs {
    /// Explain one trigger, its metadata given as KEDA sends it (one KEY=VALUE per flag);
    /// without it, every queue of every configured database is listed.
    #[arg(long = "trigger", value_name = "KEY=VALUE")]
    pub trigger: Vec<String>,
    /// The ScaledObject's namespace, for the scaler's namespace rules.
    #[arg(long, value_name = "NAMESPACE", default_value = "")]
    pub namespace: String,
    /// The schema of the DBOS system tables, for the list of queues.
    #[arg(long, value_name = "SCHEMA", default_value = trigger::DEFAULT_SCHEMA)]
    pub schema: String,
    /// `table` for people, `json` for scripts (one document per read).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Read again every refresh interval and redraw, until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Read the `default` database's URL from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub database_url_from_env: Option<String>,
}

/// How the answer is printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A readable table.
    #[default]
    Table,
    /// JSON, with the field names grpcurl prints for the same messages.
    Json,
}

/// How an inspection ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything was read and explained.
    Ok,
    /// The configuration or the trigger is wrong: fixing them, not retrying, helps.
    BadInput,
    /// A database could not be read.
    Unreachable,
}

/// Runs the inspection `args` ask for and prints it to `out`; problems with the request
/// itself go to `errors`. With `--watch`, repeats every refresh interval until `stop`
/// completes.
pub async fn run(
    settings: Settings,
    args: &InspectArgs,
    out: &mut dyn Write,
    errors: &mut dyn Write,
    stop: impl std::future::Future<Output = ()>,
) -> Verdict {
    let trigger = match requested_trigger(&settings, args) {
        Ok(trigger) => trigger,
        Err(problem) => {
            let _ = writeln!(errors, "pg-queue-scaler inspect: {problem}");
            return Verdict::BadInput;
        }
    };
    if trigger.is_none() && settings.databases.is_empty() {
        let _ = writeln!(
            errors,
            "pg-queue-scaler inspect: no database configured: pass --database-url, set \
             PGQS_DATABASE_URL, or name a variable with --database-url-from-env"
        );
        return Verdict::BadInput;
    }
    let (stopping, stopped) = watch::channel(false);
    let snapshots = Snapshots::new(
        settings.refresh.clone(),
        settings.pool.clone(),
        settings.caps,
        settings.databases.clone(),
        stopped,
        Arc::new(Metrics::new()),
    );
    tokio::pin!(stop);
    let verdict = loop {
        let (frame, verdict) = match &trigger {
            Some(trigger) => explain_frame(&snapshots, trigger).await,
            None => list_frame(&snapshots, &settings, &args.schema).await,
        };
        if let Err(error) = print(out, &frame, args) {
            let _ = writeln!(errors, "pg-queue-scaler inspect: cannot print: {error}");
            break verdict;
        }
        if !args.watch {
            break verdict;
        }
        tokio::select! {
            () = tokio::time::sleep(settings.refresh.interval) => {}
            () = &mut stop => break verdict,
        }
    };
    let _ = stopping.send(true);
    verdict
}

/// One read's answer: an explanation, a list of sources, or why there is neither.
enum Frame {
    Explanation(Box<v1::Explanation>),
    Queues(v1::ListQueuesResponse),
    Refused(String),
}

/// The trigger `--trigger` describes, checked as the server checks KEDA's metadata.
fn requested_trigger(settings: &Settings, args: &InspectArgs) -> Result<Option<Trigger>, String> {
    if args.trigger.is_empty() {
        return Ok(None);
    }
    let metadata = metadata_from_pairs(&args.trigger)?;
    let trigger = Trigger::parse(&metadata).map_err(|error| error.to_string())?;
    settings
        .access
        .check(&trigger, &args.namespace)
        .map_err(|error| error.to_string())?;
    Ok(Some(trigger))
}

/// Trigger metadata from `KEY=VALUE` arguments.
pub fn metadata_from_pairs(pairs: &[String]) -> Result<HashMap<String, String>, String> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(format!("trigger metadata is KEY=VALUE, got {pair:?}")),
        })
        .collect()
}

async fn explain_frame(snapshots: &Snapshots, trigger: &Trigger) -> (Frame, Verdict) {
    match snapshots.observe(trigger).await {
        Ok(observed) => {
            let explanation = explain::explain(trigger, &metric_name(trigger), observed);
            let verdict = match explain::outcome(&explanation) {
                Outcome::Answered => Verdict::Ok,
                Outcome::Unavailable => Verdict::Unreachable,
                Outcome::Refused => Verdict::BadInput,
            };
            (Frame::Explanation(Box::new(explanation)), verdict)
        }
        Err(error) => (Frame::Refused(error.to_string()), Verdict::BadInput),
    }
}

async fn list_frame(snapshots: &Snapshots, settings: &Settings, schema: &str) -> (Frame, Verdict) {
    let mut names = settings.database_names();
    names.sort_unstable();
    let mut sources = Vec::with_capacity(names.len());
    let mut verdict = Verdict::Ok;
    for name in names {
        match snapshots.read_named(name, schema).await {
            Ok(view) => {
                if view.state.failure.is_some() || view.state.last_good.is_none() {
                    verdict = Verdict::Unreachable;
                }
                sources.push(explain::source_queues(&view, ""));
            }
            Err(error) => return (Frame::Refused(error.to_string()), Verdict::BadInput),
        }
    }
    (Frame::Queues(v1::ListQueuesResponse { sources }), verdict)
}

fn print(out: &mut dyn Write, frame: &Frame, args: &InspectArgs) -> std::io::Result<()> {
    if args.watch && args.output == Output::Table {
        // Clear the terminal and go home, so each read redraws in place.
        write!(out, "\x1b[2J\x1b[H")?;
    }
    match (frame, args.output) {
        (Frame::Refused(message), Output::Table) => writeln!(out, "refused: {message}")?,
        (Frame::Refused(message), Output::Json) => {
            let refusal = serde_json::json!({ "refused": message });
            writeln!(out, "{}", json(&refusal, args.watch)?)?;
        }
        (Frame::Explanation(explanation), Output::Table) => {
            table::explanation(out, explanation)?;
        }
        (Frame::Explanation(explanation), Output::Json) => {
            writeln!(out, "{}", json(explanation, args.watch)?)?;
        }
        (Frame::Queues(list), Output::Table) => table::queues(out, list)?,
        (Frame::Queues(list), Output::Json) => writeln!(out, "{}", json(list, args.watch)?)?,
    }
    out.flush()
}

/// Pretty JSON for one answer; one line per answer when watching, so each line parses.
fn json(value: &impl serde::Serialize, watching: bool) -> std::io::Result<String> {
    let text = if watching {
        serde_json::to_string(value)
    } else {
        serde_json::to_string_pretty(value)
    };
    text.map_err(std::io::Error::other)
}
