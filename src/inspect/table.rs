//! The readable output of `pg-queue-scaler inspect`: aligned columns for queues, numbered
//! steps for one trigger.

use std::io::{Result, Write};

use crate::grpc::pgqueuescaler::v1;

/// Every source's queues, one table per source, groups indented under their queue.
pub(super) fn queues(out: &mut dyn Write, list: &v1::ListQueuesResponse) -> Result<()> {
    for (index, entry) in list.sources.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "{}",
            source_line(entry.source.as_ref(), entry.snapshot.as_ref())
        )?;
        let mut rows = vec![header(&["WORKER_CONC", "REPLICAS"])];
        for queue in &entry.queues {
            let worker_concurrency = queue
                .config
                .as_ref()
                .and_then(|config| config.worker_concurrency);
            rows.push(counts_row(
                queue.name.clone(),
                queue.counts.as_ref(),
                queue.oldest_waiting_seconds,
                [
                    optional(worker_concurrency),
                    optional(queue.desired_replicas),
                ],
            ));
            rows.extend(group_rows(&queue.groups));
        }
        if entry.queues.is_empty() {
            writeln!(out, "(no queues read)")?;
        } else {
            aligned(out, &rows)?;
        }
    }
    if list.sources.is_empty() {
        writeln!(out, "(no databases read)")?;
    }
    Ok(())
}

/// One trigger's explanation: the source, the steps, the queues and KEDA's answers.
pub(super) fn explanation(out: &mut dyn Write, explanation: &v1::Explanation) -> Result<()> {
    writeln!(
        out,
        "{}",
        source_line(explanation.source.as_ref(), explanation.snapshot.as_ref())
    )?;
    writeln!(out)?;
    for (number, step) in explanation.steps.iter().enumerate() {
        writeln!(out, "{:>2}. {step}", number + 1)?;
    }
    if !explanation.queues.is_empty() {
        writeln!(out)?;
        let mut rows = vec![header(&["RUNNABLE", "WORKER_CONC", "REPLICAS"])];
        for step in &explanation.queues {
            let mut row = counts_row(
                step.name.clone(),
                step.counts.as_ref(),
                step.oldest_waiting_seconds,
                [step.runnable.to_string(), optional(step.worker_concurrency)],
            );
            row.push(optional(step.replicas));
            rows.push(row);
            rows.extend(group_rows(&step.all_work));
        }
        aligned(out, &rows)?;
    }
    if let Some(answers) = &explanation.answers {
        writeln!(out)?;
        writeln!(out, "KEDA gets:")?;
        writeln!(
            out,
            "  GetMetricSpec  {} (target {})",
            answers.metric_name, answers.target
        )?;
        let active = answers
            .active
            .map(|active| active.to_string())
            .or_else(|| answers.active_error.as_ref().map(refusal));
        let value = answers
            .metric_value
            .map(|value| value.to_string())
            .or_else(|| answers.metric_error.as_ref().map(refusal));
        writeln!(out, "  IsActive       {}", active.unwrap_or_default())?;
        writeln!(out, "  GetMetrics     {}", value.unwrap_or_default())?;
    }
    Ok(())
}

fn source_line(source: Option<&v1::Source>, snapshot: Option<&v1::Snapshot>) -> String {
    let source = source.cloned().unwrap_or_default();
    let mut line = format!(
        "database {:?} · schema {:?} · {}",
        source.database, source.schema, source.system
    );
    if let Some(level) = source.migration {
        line.push_str(&format!(" migration {level}"));
    }
    if let Some(snapshot) = snapshot {
        if snapshot.read {
            line.push_str(&format!(" · read {:.1}s ago", snapshot.age_seconds));
        } else {
            line.push_str(" · not read");
        }
        if !snapshot.last_error.is_empty() {
            line.push_str(&format!(" · latest read failed: {}", snapshot.last_error));
        }
    }
    line
}

/// A queue's groups, indented under its row. One group that is neither owned nor versioned
/// says nothing the queue's row does not, so it is left out.
fn group_rows(groups: &[v1::WorkGroup]) -> Vec<Vec<String>> {
    let plain = |group: &v1::WorkGroup| group.application.is_empty() && group.version.is_empty();
    if groups.len() == 1 && plain(&groups[0]) {
        return Vec::new();
    }
    groups
        .iter()
        .map(|group| {
            counts_row(
                format!("  {}", group_label(group)),
                group.counts.as_ref(),
                group.oldest_waiting_seconds,
                [String::new(), String::new()],
            )
        })
        .collect()
}

fn group_label(group: &v1::WorkGroup) -> String {
    let application = if group.application.is_empty() {
        "unclaimed".to_owned()
    } else {
        format!("application {:?}", group.application)
    };
    let version = if group.version.is_empty() {
        "version-less".to_owned()
    } else {
        format!("version {:?}", group.version)
    };
    format!("{application}, {version}")
}

/// The columns of [`counts_row`], then `extra` ones.
fn header(extra: &[&str]) -> Vec<String> {
    ["QUEUE", "ENQUEUED", "PENDING", "DELAYED", "DEPTH", "OLDEST"]
        .iter()
        .chain(extra)
        .map(|title| (*title).to_owned())
        .collect()
}

fn counts_row(
    name: String,
    counts: Option<&v1::Counts>,
    oldest_waiting_seconds: f64,
    extra: [String; 2],
) -> Vec<String> {
    let counts = counts.copied().unwrap_or_default();
    let mut row = vec![
        name,
        counts.enqueued.to_string(),
        counts.pending.to_string(),
        counts.delayed_due.to_string(),
        counts.depth.to_string(),
        format!("{oldest_waiting_seconds:.1}s"),
    ];
    row.extend(extra);
    row
}

fn optional(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn refusal(refusal: &v1::Refusal) -> String {
    format!("error {}: {}", refusal.code, refusal.message)
}

/// Rows in columns: the first left-aligned, the others right-aligned.
fn aligned(out: &mut dyn Write, rows: &[Vec<String>]) -> Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column == 0 {
                line.push_str(&format!("{cell:<width$}", width = widths[0]));
            } else {
                line.push_str(&format!("  {cell:>width$}", width = widths[column]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
