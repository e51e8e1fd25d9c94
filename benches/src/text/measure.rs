//! Measuring one system on one trace: the replay's time and memory, the encoded history, and
//! loading that history into a fresh document, each final text checked before anything is
//! reported.

use std::time::{Duration, Instant};

use super::plan::Plan;
use super::replay::{ReplayError, TextSystem};
use super::trace::Trace;
use crate::alloc;

/// What one system did on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The system's name.
    pub system: String,
    /// Txns replayed.
    pub txns: usize,
    /// Ops in the kept replica's log, where the system counts them.
    pub ops: Option<usize>,
    /// Wall time of the replay: every txn its own local transaction, exchanges included.
    pub local: Duration,
    /// The most heap bytes live at once during the replay, over those live before it.
    pub local_peak: usize,
    /// Heap bytes of one replica holding the full history after the replay (the others and the
    /// updates kept for exchanging dropped), over those live before the replay.
    pub memory: usize,
    /// Wall time of encoding the full history.
    pub export: Duration,
    /// Bytes of the encoded full history.
    pub encoded: usize,
    /// Bytes of the full history in the system's second encoding, if it has one
    /// ([`TextSystem::alt_encoded`]).
    pub alt_encoded: Option<usize>,
    /// Wall time of loading the encoded history into a fresh document and reading its text.
    pub remote: Duration,
    /// The most heap bytes live at once during the load, over those live before it (the encoded
    /// history was live then).
    pub remote_peak: usize,
    /// Heap bytes of the fresh document after the load, with the encoded bytes freed or kept as
    /// the system does, over those live before the replay.
    pub remote_memory: usize,
}

#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Runs `system` through `trace`: replays it (timed, peak memory counted), checks every
/// replica's text, keeps one replica and counts its memory, exports its history, drops it,
/// loads the history into a fresh document and reads its text (timed together), and checks
/// that text.
///
/// Texts are checked against the trace's end content, or, where that is unknown (a prefix of a
/// concurrent trace), against each other; the final text is returned with the measurement so
/// that a caller can compare systems.
///
/// Heap bytes are only counted when [`alloc::CountingAlloc`] is the global allocator.
pub fn measure(
    system: &mut dyn TextSystem,
    trace: &Trace,
    plan: &Plan,
) -> Result<(Measurement, String), ReplayError> {
    let name = system.name();
    let in_system = |e: ReplayError| e.context(format_args!("{name} on {}", trace.name));

    let base = alloc::live_bytes();
    alloc::reset_peak();
    let (replayed, local) = timed(|| system.replay(trace, plan));
    let local_peak = alloc::peak_bytes().saturating_sub(base);
    replayed.map_err(in_system)?;

    let texts = system.texts().map_err(in_system)?;
    let final_text = check_texts(trace, &texts).map_err(in_system)?;
    drop(texts);

    system.keep_one();
    let memory = alloc::live_bytes().saturating_sub(base);
    let ops = system.op_count();
    let alt_encoded = system.alt_encoded();

    let (bytes, export) = timed(|| system.export());
    let bytes = bytes.map_err(in_system)?;
    let encoded = bytes.len();
    system.drop_source();

    let before_load = alloc::live_bytes();
    alloc::reset_peak();
    // Reading the text back is part of the load: a system that materializes its state lazily
    // pays for it here, as an editor opening the document would.
    let (fresh, remote) = timed(|| {
        system.load(bytes)?;
        system.fresh_text()
    });
    let remote_peak = alloc::peak_bytes().saturating_sub(before_load);
    let fresh = fresh.map_err(in_system)?;
    let fresh_len = fresh.capacity();
    let remote_memory = (alloc::live_bytes().saturating_sub(base)).saturating_sub(fresh_len);
    if fresh != final_text {
        return Err(in_system(ReplayError::new(format!(
            "the document loaded from the encoded history differs from the replayed one: {}",
            diff_context(&final_text, &fresh)
        ))));
    }
    drop(fresh);
    system.drop_fresh();

    let measurement = Measurement {
        system: name,
        txns: trace.txns.len(),
        ops,
        local,
        local_peak,
        memory,
        export,
        encoded,
        alt_encoded,
        remote,
        remote_peak,
        remote_memory,
    };
    Ok((measurement, final_text))
}

/// Checks that every replica reads the trace's end content (or, if unknown, that they all read
/// the same), and returns that text.
pub fn check_texts(trace: &Trace, texts: &[String]) -> Result<String, ReplayError> {
    let (expected, what) = match &trace.end_content {
        Some(end) => (end.as_str(), "endContent"),
        None => (
            texts
                .first()
                .ok_or_else(|| ReplayError::new("no replica"))?
                .as_str(),
            "replica 0's text",
        ),
    };
    for (agent, text) in texts.iter().enumerate() {
        if text != expected {
            return Err(ReplayError::new(format!(
                "replica {agent}'s final text differs from {what}: {}",
                diff_context(expected, text)
            )));
        }
    }
    Ok(expected.to_owned())
}

/// Where `actual` first differs from `expected`, with a few characters of context on each side.
pub fn diff_context(expected: &str, actual: &str) -> String {
    const CONTEXT: usize = 24;
    let at = expected
        .chars()
        .zip(actual.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let window = |s: &str| -> String {
        s.chars()
            .skip(at.saturating_sub(CONTEXT))
            .take(2 * CONTEXT)
            .collect()
    };
    format!(
        "first difference at code point {at} (expected {} code points, got {}); \
         expected …{:?}…, got …{:?}…",
        expected.chars().count(),
        actual.chars().count(),
        window(expected),
        window(actual),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_context_points_at_the_first_difference() {
        let d = diff_context("hello world", "hello there");
        assert!(
            d.starts_with("first difference at code point 6 (expected 11"),
            "{d}"
        );
        assert!(d.contains("\"hello world\""), "{d}");
        assert!(d.contains("\"hello there\""), "{d}");
    }

    #[test]
    fn check_texts_catches_a_wrong_replica() {
        let mut trace = Trace::parse(
            "t",
            br#"{"endContent":"ab","txns":[{"patches":[[0,0,"ab"]]}]}"#,
        )
        .unwrap();
        assert_eq!(check_texts(&trace, &["ab".into()]).unwrap(), "ab");
        let e = check_texts(&trace, &["ab".into(), "ba".into()]).unwrap_err();
        assert!(e.0.starts_with("replica 1's final text differs from endContent"));
        trace.end_content = None;
        assert!(check_texts(&trace, &["x".into(), "x".into()]).is_ok());
        assert!(check_texts(&trace, &["x".into(), "y".into()]).is_err());
    }
}
