//! Human output: plain aligned tables, the same data as `--json`.

use pgratchet_runtime::{Applied, Event, Issue, Planned, Redo, Repaired, Report, Status};

/// Renders rows under a header, columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if index + 1 < cells.len() {
                text.push_str(&" ".repeat(width.saturating_sub(cell.chars().count())));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

pub(crate) fn statuses(statuses: &[Status]) -> String {
    if statuses.is_empty() {
        return "no migrations\n".to_owned();
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|status| {
            vec![
                status.version.to_string(),
                status.name.clone(),
                status.state.to_string(),
                dash(status.applied_at.clone()),
                dash(status.execution_time_ms.map(|ms| format!("{ms} ms"))),
            ]
        })
        .collect();
    table(
        &["VERSION", "NAME", "STATE", "APPLIED AT", "DURATION"],
        &rows,
    )
}

pub(crate) fn plan(plan: &[Planned]) -> String {
    if plan.is_empty() {
        return "nothing to apply\n".to_owned();
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|planned| {
            vec![
                planned.version.to_string(),
                planned.name.clone(),
                if planned.no_transaction { "no" } else { "yes" }.to_owned(),
                planned.checksum[..12.min(planned.checksum.len())].to_owned(),
            ]
        })
        .collect();
    format!(
        "would apply {} migration(s):\n{}",
        plan.len(),
        table(&["VERSION", "NAME", "TRANSACTION", "CHECKSUM"], &rows)
    )
}

pub(crate) fn applied(verb: &str, applied: &[Applied], elapsed_ms: u64) -> String {
    if applied.is_empty() {
        return format!("nothing to {verb}\n");
    }
    let rows: Vec<Vec<String>> = applied
        .iter()
        .map(|applied| {
            vec![
                applied.version.to_string(),
                applied.name.clone(),
                format!("{} ms", applied.duration_ms),
            ]
        })
        .collect();
    let past = if verb == "apply" {
        "applied"
    } else {
        "rolled back"
    };
    format!(
        "{past} {} migration(s) in {elapsed_ms} ms:\n{}",
        applied.len(),
        table(&["VERSION", "NAME", "DURATION"], &rows)
    )
}

pub(crate) fn issues(issues: &[Issue]) -> String {
    if issues.is_empty() {
        return "valid: every migration matches the database\n".to_owned();
    }
    let rows: Vec<Vec<String>> = issues
        .iter()
        .map(|issue| {
            vec![
                issue.version.to_string(),
                issue.name.clone(),
                serde_json::to_value(issue.kind)
                    .ok()
                    .and_then(|kind| kind.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                if issue.error { "error" } else { "warning" }.to_owned(),
            ]
        })
        .collect();
    table(&["VERSION", "NAME", "ISSUE", "SEVERITY"], &rows)
}

pub(crate) fn events(events: &[Event]) -> String {
    if events.is_empty() {
        return "no events recorded\n".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            vec![
                event.at.clone(),
                event.version.to_string(),
                event.action.to_string(),
                event.by.clone(),
                dash(event.host.clone()),
                dash(event.duration_ms.map(|ms| format!("{ms} ms"))),
                dash(event.error.clone()),
            ]
        })
        .collect();
    table(
        &["AT", "VERSION", "ACTION", "BY", "HOST", "DURATION", "NOTE"],
        &rows,
    )
}

/// A run's (or a rollback's) report: what it applied or rolled back, and its warnings.
pub(crate) fn report(report: &Report) -> String {
    let mut text = if report.rolled_back.is_empty() {
        applied("apply", &report.applied, report.elapsed_ms)
    } else {
        applied("roll back", &report.rolled_back, report.elapsed_ms)
    };
    for warning in &report.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    text
}

/// What a repair did.
pub(crate) fn repaired(repaired: &Repaired) -> String {
    let mut text = String::new();
    for status in &repaired.cleared {
        text.push_str(&format!(
            "cleared {} record of {} {}{}: it is pending again\n",
            status.state,
            status.version,
            status.name,
            status
                .error
                .as_ref()
                .map(|error| format!(" ({error})"))
                .unwrap_or_default()
        ));
    }
    for status in &repaired.restamped {
        text.push_str(&format!(
            "re-stamped the checksum of {} {}\n",
            status.version, status.name
        ));
    }
    for version in &repaired.untouched {
        text.push_str(&format!("version {version} needed no repair\n"));
    }
    if !repaired.invalid_indexes.is_empty() {
        text.push_str(&format!(
            "INVALID indexes in the database (left by a failed CREATE INDEX CONCURRENTLY? drop them before re-running): {}\n",
            repaired.invalid_indexes.join(", ")
        ));
    }
    text
}

/// What a redo found.
pub(crate) fn redo(redo: &Redo) -> String {
    let mut text = format!(
        "round-tripped {} migration(s); {} without down SQL\n",
        redo.restored.len(),
        redo.irreversible.len()
    );
    for mismatch in &redo.mismatches {
        text.push_str(&format!(
            "down of {} {} did not restore the schema:\n",
            mismatch.version, mismatch.name
        ));
        for line in &mismatch.missing {
            text.push_str(&format!("  missing after down: {line}\n"));
        }
        for line in &mismatch.left_behind {
            text.push_str(&format!("  left behind by down: {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let text = table(
            &["A", "LONG HEADER", "C"],
            &[vec!["wide cell".into(), "x".into(), "".into()]],
        );
        assert_eq!(text, "A          LONG HEADER  C\nwide cell  x\n");
    }
}
