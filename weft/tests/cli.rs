//! The `weft` tool, run as a process: the demo converges and survives reopening; `simulate`
//! passes on sound seeds and fails, with the seed and a minimized history, on a broken setup.

use std::process::{Command, Output};

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("the weft binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn demo_converges_and_survives_reopening() {
    let dir = std::env::temp_dir().join(format!("weft-cli-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = weft(&["demo", "--dir", dir.to_str().expect("utf-8 temp dir")]);
    let text = stdout(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("converged: alice and bob hold identical state"),
        "{text}"
    );
    assert!(
        text.contains("\"bob says: hello world, from alice\""),
        "{text}"
    );
    assert!(text.contains("views 5"), "{text}");
    // The merge handler joins the two concurrent values in op id order, which the system
    // clocks decide (each HLC counts up within a millisecond), so either order is right.
    assert!(
        text.contains("summary \"fast & small\"") || text.contains("summary \"small & fast\""),
        "{text}"
    );
    assert!(text.contains("closed and reopened from disk"), "{text}");
}

#[test]
fn simulate_passes_on_sound_seeds() {
    let out = weft(&[
        "simulate",
        "--seeds",
        "2",
        "--start",
        "0",
        "--replicas",
        "3",
        "--steps",
        "20-40",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 histories passed"), "{text}");
    assert!(text.contains("histories/s"), "{text}");
}

#[test]
fn simulate_fails_on_a_broken_merge_handler_with_seed_and_minimized_history() {
    let out = weft(&[
        "simulate",
        "--seeds",
        "20",
        "--start",
        "0",
        "--replicas",
        "3-4",
        "--steps",
        "20-60",
        "--mutation",
        "stateful-merge",
    ]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAILED: seed "), "{text}");
    assert!(text.contains("differs from the reference model"), "{text}");
    assert!(text.contains("minimized history"), "{text}");
    assert!(text.contains("--seeds 1 --start "), "{text}");
    assert!(text.contains("--mutation stateful-merge"), "{text}");
    assert!(!text.contains("histories passed"), "{text}");
}

#[test]
fn simulate_refuses_bad_arguments() {
    let out = weft(&["simulate", "--replicas", "5-3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 is more than 3"));
}

/// A reader that stops early (`weft demo | head -1`) ends the run quietly with status 141, as
/// SIGPIPE would, rather than a panic or a status that passes for success.
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let dir = std::env::temp_dir().join(format!("weft-cli-pipe-{}", std::process::id()));
    let dir = dir.to_str().expect("utf-8 temp dir");
    for args in [
        vec!["demo", "--dir", dir],
        vec!["simulate", "--seeds", "1", "--steps", "5-10"],
    ] {
        let _ = std::fs::remove_dir_all(dir);
        // The read end is closed before the child starts, so its first write fails.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(&args)
            .stdout(writer)
            .output()
            .expect("the weft binary runs");
        let _ = std::fs::remove_dir_all(dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{}: {stderr}", args[0]);
        assert!(stderr.is_empty(), "{}: {stderr}", args[0]);
    }
}
