//! The text benchmark's report: a markdown table per metric, files as rows and systems as
//! columns, with the ratio of weft's number to each peer's; then one JSON line per (file,
//! system).

use std::fmt::Write as _;

use super::measure::Measurement;

/// What one system did on one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It ran, and its texts checked out.
    Measured(Measurement),
    /// It did not run, for this reason.
    Skipped(String),
}

/// Every system's outcome on one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileResult {
    /// The trace's name.
    pub file: String,
    /// Txns in the trace (as replayed).
    pub txns: usize,
    /// `(system name, outcome)`, in the order the systems ran.
    pub outcomes: Vec<(String, Outcome)>,
}

/// The system the ratios are about.
const WEFT: &str = "weft";

struct Metric {
    title: &'static str,
    unit: &'static str,
    better: &'static str,
    value: fn(&Measurement) -> f64,
    format: fn(f64) -> String,
}

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

fn bytes(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const METRICS: [Metric; 4] = [
    Metric {
        title: "Local replay",
        unit: "ms",
        better: "faster",
        value: |m| m.local.as_secs_f64() * 1e3,
        format: ms,
    },
    Metric {
        title: "Remote merge (load the encoded full history into a fresh document, read its text)",
        unit: "ms",
        better: "faster",
        value: |m| m.remote.as_secs_f64() * 1e3,
        format: ms,
    },
    Metric {
        title: "Encoded size of the full history",
        unit: "bytes",
        better: "smaller",
        value: |m| m.encoded as f64,
        format: bytes,
    },
    Metric {
        title: "Memory after replay (live heap bytes of one replica holding the full history)",
        unit: "bytes",
        better: "smaller",
        value: |m| m.memory as f64,
        format: bytes,
    },
];

/// The first word of a system's name: `"yrs 0.28.1"` → `"yrs"`.
fn short(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

/// The report as markdown tables followed by JSON lines.
pub fn render(results: &[FileResult]) -> String {
    let mut systems: Vec<&str> = Vec::new();
    for (name, _) in results.iter().flat_map(|r| &r.outcomes) {
        if !systems.contains(&name.as_str()) {
            systems.push(name);
        }
    }
    let peers: Vec<&str> = systems.iter().copied().filter(|&s| s != WEFT).collect();
    let with_ratios = systems.contains(&WEFT);
    let mut out = String::new();
    let mut skips: Vec<String> = Vec::new();
    for r in results {
        for (name, outcome) in &r.outcomes {
            if let Outcome::Skipped(why) = outcome {
                skips.push(format!("{name} on {}: {why}", r.file));
            }
        }
    }
    for metric in &METRICS {
        let _ = writeln!(out, "\n### {} ({})\n", metric.title, metric.unit);
        if with_ratios {
            let _ = writeln!(
                out,
                "weft/peer is weft's number over the peer's: below 1 means weft is {}.\n",
                metric.better
            );
        }
        let mut header = String::from("| file | txns |");
        let mut rule = String::from("|---|---:|");
        for s in &systems {
            let _ = write!(header, " {s} |");
            rule.push_str("---:|");
        }
        if with_ratios {
            for p in &peers {
                let _ = write!(header, " weft/{} |", short(p));
                rule.push_str("---:|");
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for r in results {
            let value = |system: &str| {
                r.outcomes
                    .iter()
                    .find(|(name, _)| name == system)
                    .map(|(_, o)| o)
            };
            let _ = write!(out, "| {} | {} |", r.file, bytes(r.txns as f64));
            for s in &systems {
                let cell = match value(s) {
                    Some(Outcome::Measured(m)) => (metric.format)((metric.value)(m)),
                    Some(Outcome::Skipped(_)) => "skipped".into(),
                    None => "–".into(),
                };
                let _ = write!(out, " {cell} |");
            }
            if with_ratios {
                let weft = match value(WEFT) {
                    Some(Outcome::Measured(m)) => Some((metric.value)(m)),
                    _ => None,
                };
                for p in &peers {
                    let cell = match (weft, value(p)) {
                        (Some(w), Some(Outcome::Measured(m))) => {
                            format!("{:.2}", w / (metric.value)(m))
                        }
                        _ => "–".into(),
                    };
                    let _ = write!(out, " {cell} |");
                }
            }
            out.push('\n');
        }
    }
    if !skips.is_empty() {
        out.push_str("\nSkipped:\n");
        for s in &skips {
            let _ = writeln!(out, "- {s}");
        }
    }
    out.push('\n');
    for r in results {
        for (name, outcome) in &r.outcomes {
            let _ = writeln!(out, "{}", json_line(&r.file, name, outcome));
        }
    }
    out
}

/// One JSON line for one (file, system).
pub fn json_line(file: &str, system: &str, outcome: &Outcome) -> String {
    let value = match outcome {
        Outcome::Measured(m) => serde_json::json!({
            "bench": "text",
            "file": file,
            "system": system,
            "txns": m.txns,
            "ops": m.ops,
            "local_s": m.local.as_secs_f64(),
            "local_peak_bytes": m.local_peak,
            "memory_bytes": m.memory,
            "export_s": m.export.as_secs_f64(),
            "encoded_bytes": m.encoded,
            "remote_s": m.remote.as_secs_f64(),
            "remote_peak_bytes": m.remote_peak,
            "remote_memory_bytes": m.remote_memory,
        }),
        Outcome::Skipped(why) => serde_json::json!({
            "bench": "text",
            "file": file,
            "system": system,
            "skipped": why,
        }),
    };
    value.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn measured(system: &str, local_ms: u64, encoded: usize) -> (String, Outcome) {
        let m = Measurement {
            system: system.into(),
            txns: 10,
            ops: None,
            local: Duration::from_millis(local_ms),
            local_peak: 0,
            memory: 1_234_567,
            export: Duration::ZERO,
            encoded,
            alt_encoded: None,
            remote: Duration::from_millis(1),
            remote_peak: 0,
            remote_memory: 0,
        };
        (system.into(), Outcome::Measured(m))
    }

    #[test]
    fn tables_have_ratios_and_skips() {
        let results = [FileResult {
            file: "a.json.gz".into(),
            txns: 10,
            outcomes: vec![
                measured("weft", 10, 100),
                measured("yrs 0.28.1", 20, 400),
                ("loro 1.17.1".into(), Outcome::Skipped("no reason".into())),
            ],
        }];
        let out = render(&results);
        assert!(
            out.contains(
                "| file | txns | weft | yrs 0.28.1 | loro 1.17.1 | weft/yrs | weft/loro |"
            ),
            "{out}"
        );
        assert!(
            out.contains("| a.json.gz | 10 | 10.0 | 20.0 | skipped | 0.50 | – |"),
            "{out}"
        );
        assert!(
            out.contains("| a.json.gz | 10 | 100 | 400 | skipped | 0.25 | – |"),
            "{out}"
        );
        assert!(out.contains("1,234,567"), "{out}");
        assert!(
            out.contains("- loro 1.17.1 on a.json.gz: no reason"),
            "{out}"
        );
        assert!(out.contains(r#""system":"yrs 0.28.1""#), "{out}");
        assert!(out.contains(r#""skipped":"no reason""#), "{out}");
    }
}
