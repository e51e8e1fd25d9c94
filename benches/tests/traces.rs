//! Every editing trace in `../shared/traces` replayed through weft, checked against its
//! `endContent`.
//!
//! Built with optimizations (`cargo test --release`), the full traces run. In a debug build each
//! file is cut to its first [`DEBUG_TXNS`] txns (override with `WEFT_TRACE_TXNS`), which today
//! leaves every file whole but automerge-paper and keeps the run around 15 s: a cut sequential
//! trace is checked against the naive `Vec<char>` model, and a cut concurrent one (closed under
//! parents, as parents are earlier txns) against diamond-types replaying the same prefix, with
//! every weft replica agreeing. Either way the encoded op log is loaded into a fresh replica,
//! which must read the same text.

use benches::text::diamond::DiamondTypes;
use benches::text::measure::{diff_context, measure};
use benches::text::plan::Plan;
use benches::text::replay::{Replicated, TextSystem};
use benches::text::trace::{Kind, Trace, trace_files, traces_dir};
use benches::text::weft::Weft;

/// Txns per file in a debug build.
const DEBUG_TXNS: usize = 40_000;

fn txns_limit() -> Option<usize> {
    if let Some(n) = std::env::var_os("WEFT_TRACE_TXNS") {
        let n = n.to_string_lossy().replace('_', "");
        return Some(n.parse().expect("WEFT_TRACE_TXNS is a number"));
    }
    cfg!(debug_assertions).then_some(DEBUG_TXNS)
}

fn replay_weft(trace: &Trace) -> Result<String, String> {
    let plan = Plan::new(trace).map_err(|e| e.to_string())?;
    let mut weft = Replicated::<Weft>::default();
    measure(&mut weft, trace, &plan)
        .map(|(_, text)| text)
        .map_err(|e| e.to_string())
}

fn replay_reference(trace: &Trace) -> String {
    let plan = Plan::new(trace).unwrap();
    let mut dt = DiamondTypes::default();
    dt.replay(trace, &plan).unwrap();
    dt.texts().unwrap().swap_remove(0)
}

#[test]
fn every_trace_replays_to_its_end_content() {
    let dir = traces_dir();
    let files = trace_files(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        files.len() >= 6,
        "expected the 6 shared traces in {}",
        dir.display()
    );
    let limit = txns_limit();
    let mut failures = Vec::new();
    for file in &files {
        let full = Trace::load(file).unwrap_or_else(|e| panic!("{e}"));
        let trace = match limit {
            Some(n) => full.prefix(n).unwrap_or_else(|e| panic!("{e}")),
            None => full,
        };
        match replay_weft(&trace) {
            Err(e) => failures.push(e),
            Ok(text) if trace.end_content.is_none() => {
                assert_eq!(trace.kind, Kind::Concurrent);
                let reference = replay_reference(&trace);
                if text != reference {
                    failures.push(format!(
                        "{}: weft and diamond-types disagree: {}",
                        trace.name,
                        diff_context(&reference, &text)
                    ));
                }
            }
            Ok(_) => {}
        }
        eprintln!("{}: {} txns checked", trace.name, trace.txns.len());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_end_content_fails_the_check() {
    let file = traces_dir().join("sequential/sveltecomponent.json.gz");
    let mut trace = Trace::load(&file)
        .and_then(|t| t.prefix(200))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(replay_weft(&trace).is_ok());
    trace.end_content.as_mut().unwrap().insert(3, '#');
    let e = replay_weft(&trace).unwrap_err();
    assert!(e.contains("differs from endContent"), "{e}");
    assert!(e.contains("first difference at code point 3"), "{e}");
}

#[test]
fn a_concurrent_prefix_matches_the_reference_across_merges() {
    // A short prefix with merges in it, so that a debug run checks merging even if the limit
    // above is set lower.
    let file = traces_dir().join("concurrent/friendsforever.json.gz");
    let trace = Trace::load(&file)
        .and_then(|t| t.prefix(400))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        trace.txns.iter().any(|t| t.parents.len() > 1),
        "no merge in the prefix"
    );
    let text = replay_weft(&trace).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text, replay_reference(&trace));
}
