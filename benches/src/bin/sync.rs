//! The sync protocol on large logs: round trips, payload and overhead bytes, CPU time.
//!
//! `cargo run --release -p benches --bin sync -- --json [--ops N]` prints one JSON object per
//! scenario. Two `merkle_sync::Session`s talk over a virtual link with 50 ms one-way latency
//! (RTT 100 ms): `round_trips` is the virtual time at which both logs hold the union, in RTTs
//! (half round trips show as .5); `rt_done` is when both sessions know they are synced.
//! `payload_bytes` is the encoded size of the ops one side lacked (as in an op batch, without a
//! version byte each); `overhead_bytes` is everything else on the wire. Each side's log is a
//! `crdt_core::MemoryStorage` (which keeps ops encoded, so frames copy stored bytes); `cpu_ms`
//! is the CPU time (this thread's, from `CLOCK_THREAD_CPUTIME_ID`, so other load on the
//! machine does not count; wall time off Linux) spent in both sessions and in indexing the
//! received ops from their bytes (`Index::insert_encoded`); storing them is the application's
//! and is reported apart as `store_ms` (`Storage::append_encoded`, a copy of the bytes: the
//! path of a peer that stores and forwards ops), and so is `decode_ms`, what a replica that
//! applies them adds by decoding them (`EncodedOps::to_ops`)
//! (building the logs and indexes beforehand is not counted, nor the sketch caches of the
//! indexes, which `Index::warm_sketches` builds there, as a long-lived process holds them; an
//! index that only catches up never builds one). `wall_ms` is the wall time of
//! the same work (storing and decoding excluded). `send_ms`, `receive_ms` and `index_ms` split
//! `cpu_ms` into `poll_transmit`, `handle_message` and `Index::insert_encoded` (the same
//! clock).
//! `--scenario NAME` runs
//! one scenario and `--system NAME` one of the two weft systems. Each weft scenario runs
//! `SYNC_REPEAT` times (default 5) and the best run is reported: the first runs of a process
//! pay page faults on heap memory fresh from the OS (10 to 30 ms on `scattered_10000`), which
//! later runs reuse, as a long-lived application does.
//! Each scenario runs twice: `weft` (the default config: the sketch, falling back to the
//! descent) and `weft-descent` (`Reconcile::Descent`, range digests only; `--width B` splits
//! each differing range into `2^B` sub-ranges per message, default 4).
//!
//! The same scenarios then run on automerge's sync protocol and yrs's state-vector exchange
//! (`benches::sync_peers`), on `--peer-ops N` ops (default 50,000: with one automerge change per
//! op, building the two documents of a scenario takes about 5 minutes at 100,000 on 2 shared
//! cores, while the sync itself stays under a second) written round-robin by `--peer-actors K`
//! writers (default 1,000), so that scattered gaps are possible in systems that hold only
//! causally closed sets. `--no-peers` skips them; `--peers-only` skips weft. Their lines carry
//! the same fields plus `actors` and `rt_time` (time to the union in round trips, as weft's
//! `round_trips` measures it; their `round_trips` is the messages in the busier direction).
//! A markdown table of every line follows (on stderr with `--json`).
//! `--help` lists the flags; an unknown flag, a bad value or an unknown scenario or system name
//! stops with an error (exit status 2) rather than falling back to a default.

use std::process::ExitCode;
use std::time::Instant;

use benches::sync_peers::{self, PeerOutcome};
use crdt_core::{MemoryStorage, Op, OpId, Payload, ReplicaId, Storage, Value};
use merkle_sync::{Config, Event, Index, Reconcile, Scope, Session, StorageSource};

use benches::map_workload::SplitMix64 as Rng;

/// `n` ops of about 100 encoded bytes by 8 replicas, in id order.
fn workload(n: usize) -> Vec<Op> {
    let mut rng = Rng(42);
    let mut ms = 1_795_316_400_000;
    (0..n)
        .map(|i| {
            ms += 1 + rng.next_u64() % 3;
            let replica = 1 + rng.next_u64() % 8;
            Op {
                id: OpId::new(
                    hlc::Timestamp::new(ms, 0).expect("in range"),
                    ReplicaId::new(replica),
                ),
                schema_version: 1,
                collection: "items".into(),
                key: format!("k{:05}", i % 10_000),
                field: "value".into(),
                deps: vec![],
                payload: Payload::Write(Value::String(format!(
                    "{:048x}",
                    u128::from(rng.next_u64())
                ))),
            }
        })
        .collect()
}

struct Outcome {
    round_trips: f64,
    rt_done: f64,
    wire_bytes: u64,
    /// Wall time in the sync, ms.
    wall_ms: f64,
    /// Of it, CPU time of this thread, ms (see [`cpu_ns`]).
    cpu_ms: f64,
    store_ms: f64,
    /// CPU in decoding the received ops, which a replica that applies them adds.
    decode_ms: f64,
    /// CPU in sending, receiving and indexing.
    split_ms: [f64; 3],
}

/// CPU time this thread has run, in ns: `CLOCK_THREAD_CPUTIME_ID` on Linux, which the kernel
/// brings up to date at each reading (so it is exact to well under a microsecond, and other
/// load on the machine does not count); wall time elsewhere. Readings are kept monotonic, so
/// that differences of them never wrap even if a reading after a move to the other core came
/// out a little below the one before.
#[allow(clippy::disallowed_methods, reason = "the bench times itself")]
fn cpu_ns() -> u64 {
    thread_local! {
        static LAST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let now = thread_cpu::now_ns().unwrap_or_else(|| {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    });
    LAST.with(|last| {
        let t = now.max(last.get());
        last.set(t);
        t
    })
}

/// The calling thread's CPU clock, without a dependency: glibc and musl both export
/// `clock_gettime`, and `CLOCK_THREAD_CPUTIME_ID` is 3 on every Linux architecture.
#[cfg(target_os = "linux")]
#[allow(unsafe_code, reason = "one libc call with a local out-parameter")]
mod thread_cpu {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }

    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

    pub(super) fn now_ns() -> Option<u64> {
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return None;
        }
        let s = u64::try_from(ts.tv_sec).ok()?;
        let ns = u64::try_from(ts.tv_nsec).ok()?;
        s.checked_mul(1_000_000_000)?.checked_add(ns)
    }
}

#[cfg(not(target_os = "linux"))]
mod thread_cpu {
    pub(super) fn now_ns() -> Option<u64> {
        None
    }
}

#[allow(clippy::disallowed_methods, reason = "the bench times itself")]
fn drive(
    config: &Config,
    logs: &mut [MemoryStorage; 2],
    indexes: &mut [Index; 2],
    union_len: u64,
) -> Outcome {
    const LATENCY: u64 = 50;
    let scope = Scope::new(["items"]);
    let wall = Instant::now();
    let start = cpu_ns();
    let mut store_ns = 0;
    let mut decode_ns = 0;
    let mut store_wall = 0.0;
    // CPU in poll_transmit, handle_message, indexing (store_ns also counts indexing and
    // decoding).
    let mut split = [0u64; 3];
    let mut sessions = [0, 1].map(|i| Session::new(0, scope.clone(), config.clone(), &indexes[i]));
    let mut flight: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    let mut now = 0;
    let mut wire_bytes = 0;
    let mut union_at = None;
    loop {
        for (from, s) in sessions.iter_mut().enumerate() {
            loop {
                let t = cpu_ns();
                let out = s
                    .poll_transmit(now, &indexes[from], &StorageSource(&logs[from]))
                    .expect("transmit");
                split[0] += cpu_ns() - t;
                let Some(bytes) = out else { break };
                wire_bytes += bytes.len() as u64;
                flight.push((now + LATENCY, 1 - from, bytes));
            }
        }
        if union_at.is_none() && indexes.iter().all(|i| i.len() == union_len) {
            union_at = Some(now);
        }
        if flight.is_empty() && sessions.iter().all(Session::is_synced) {
            break;
        }
        let next = flight
            .iter()
            .map(|m| m.0)
            .min()
            .or_else(|| sessions.iter().filter_map(Session::poll_timeout).min());
        now = next.expect("stuck: nothing in flight and no timer");
        assert!(now < 100_000, "no convergence");
        let (due, later): (Vec<_>, Vec<_>) = flight.into_iter().partition(|m| m.0 <= now);
        flight = later;
        for (_, to, bytes) in due {
            let t = cpu_ns();
            sessions[to]
                .handle_message(now, &bytes, &indexes[to])
                .expect("handle");
            split[1] += cpu_ns() - t;
            while let Some(e) = sessions[to].poll_event() {
                if let Event::Ops(ops) = e {
                    let t = cpu_ns();
                    indexes[to].insert_encoded(&ops);
                    split[2] += cpu_ns() - t;
                    let w = Instant::now();
                    logs[to].append_encoded(&ops).expect("append");
                    // What a replica that applies the ops adds: decoding them.
                    let d = cpu_ns();
                    drop(std::hint::black_box(ops.to_ops().expect("decode")));
                    decode_ns += cpu_ns() - d;
                    store_wall += w.elapsed().as_secs_f64() * 1e3;
                    store_ns += cpu_ns() - t;
                }
            }
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now, &indexes[i]).expect("timeout");
            }
        }
    }
    Outcome {
        round_trips: union_at.unwrap_or(now) as f64 / (2 * LATENCY) as f64,
        rt_done: now as f64 / (2 * LATENCY) as f64,
        wire_bytes,
        wall_ms: wall.elapsed().as_secs_f64() * 1e3 - store_wall,
        cpu_ms: (cpu_ns() - start - (store_ns - split[2])) as f64 / 1e6,
        store_ms: (store_ns - split[2] - decode_ns) as f64 / 1e6,
        decode_ms: decode_ns as f64 / 1e6,
        split_ms: split.map(|ns| ns as f64 / 1e6),
    }
}

/// One row of the closing table.
struct Row {
    scenario: String,
    system: String,
    ops: usize,
    diff: usize,
    round_trips: f64,
    payload: u64,
    overhead: i64,
    cpu_ms: f64,
}

const SCENARIOS: [&str; 5] = [
    "identical",
    "tail_100",
    "scattered_100",
    "scattered_10000",
    "one_side_empty",
];
const SYSTEMS: [&str; 2] = ["weft", "weft-descent"];

const USAGE: &str = "usage: sync [--json] [--ops N] [--scenario NAME] [--system weft|weft-descent]
            [--width B] [--peer-ops N] [--peer-actors K] [--no-peers | --peers-only]
scenarios: identical, tail_100, scattered_100, scattered_10000, one_side_empty
environment: SYNC_REPEAT=N runs each weft scenario N times, reporting the best (default 5)";

/// The command line, checked: an unknown flag, a missing or unparsable value or an unknown
/// scenario or system name is an error rather than a silent default.
struct Options {
    json: bool,
    ops: usize,
    scenario: Option<String>,
    system: Option<String>,
    width: u8,
    peer_ops: usize,
    peer_actors: usize,
    weft: bool,
    peers: bool,
    repeat: usize,
}

fn number<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{name}: {v:?} is not a valid number"))
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            json: false,
            ops: 1_000_000,
            scenario: None,
            system: None,
            width: 4,
            peer_ops: 50_000,
            peer_actors: 1_000,
            weft: true,
            peers: true,
            repeat: 5,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--json" => o.json = true,
                "--no-peers" => o.peers = false,
                "--peers-only" => o.weft = false,
                "--ops" => o.ops = number(arg, value()?)?,
                "--width" => o.width = number(arg, value()?)?,
                "--peer-ops" => o.peer_ops = number(arg, value()?)?,
                "--peer-actors" => o.peer_actors = number(arg, value()?)?,
                "--scenario" => {
                    let v = value()?;
                    if !SCENARIOS.contains(&v.as_str()) {
                        return Err(format!("unknown scenario {v:?}"));
                    }
                    o.scenario = Some(v);
                }
                "--system" => {
                    let v = value()?;
                    if !SYSTEMS.contains(&v.as_str()) {
                        return Err(format!("unknown system {v:?}"));
                    }
                    o.system = Some(v);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if !o.weft && !o.peers {
            return Err("--no-peers and --peers-only together leave nothing to run".into());
        }
        if o.width == 0 || o.width > 8 {
            return Err(format!("--width {} is outside 1-8", o.width));
        }
        if let Ok(v) = std::env::var("SYNC_REPEAT") {
            o.repeat = number("SYNC_REPEAT", v)?;
            if o.repeat == 0 {
                return Err("SYNC_REPEAT must be at least 1".into());
            }
        }
        Ok(o)
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | system | ops | diff | round trips | payload B | overhead B | cpu ms |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} |\n",
            r.scenario, r.system, r.ops, r.diff, r.round_trips, r.payload, r.overhead, r.cpu_ms
        ));
    }
    t
}

fn peers(opts: &Options, rows: &mut Vec<Row>) {
    let json = opts.json;
    let n = opts.peer_ops;
    let actors = opts.peer_actors.clamp(1, n.max(1));
    let changes = sync_peers::automerge_changes(n, actors);
    let updates = sync_peers::yrs_updates(n, actors);
    for scenario in SCENARIOS {
        let drops = sync_peers::suffix_drops(scenario, n, actors, 7);
        for out in [
            sync_peers::automerge_scenario(&changes, &drops),
            sync_peers::yrs_scenario(&updates, &drops),
        ] {
            report(scenario, actors, &out, json, rows);
        }
    }
}

fn report(scenario: &str, actors: usize, o: &PeerOutcome, json: bool, rows: &mut Vec<Row>) {
    if json {
        println!(
            "{{\"scenario\":\"{scenario}\",\"system\":\"{}\",\"ops\":{},\"diff\":{},\"round_trips\":{},\"payload_bytes\":{},\"overhead_bytes\":{},\"cpu_ms\":{:.1},\"rt_time\":{},\"actors\":{actors}}}",
            o.system,
            o.ops,
            o.diff,
            o.round_trips,
            o.payload_bytes,
            o.overhead_bytes,
            o.cpu_ms,
            o.rt_time
        );
    } else {
        println!(
            "{scenario:<16} {}  ops {:>8} diff {:>8}  RT {:>4} (time {:>4})  payload {:>10} B  overhead {:>8} B  cpu {:>8.1} ms  ({actors} writers)",
            o.system,
            o.ops,
            o.diff,
            o.round_trips,
            o.rt_time,
            o.payload_bytes,
            o.overhead_bytes,
            o.cpu_ms
        );
    }
    rows.push(Row {
        scenario: scenario.into(),
        system: o.system.into(),
        ops: o.ops,
        diff: o.diff,
        round_trips: o.round_trips,
        payload: o.payload_bytes,
        overhead: o.overhead_bytes,
        cpu_ms: o.cpu_ms,
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match Options::parse(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("sync: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let json = opts.json;
    let mut rows = Vec::new();
    if opts.weft {
        weft(&opts, &mut rows);
    }
    if opts.peers {
        peers(&opts, &mut rows);
    }
    if json {
        eprint!("{}", table(&rows));
    } else {
        print!("\n{}", table(&rows));
    }
    ExitCode::SUCCESS
}

fn weft(opts: &Options, rows: &mut Vec<Row>) {
    let json = opts.json;
    let n = opts.ops;
    let all = workload(n);
    let mut full = MemoryStorage::new();
    full.append(&all).expect("append");
    let full_index = Index::from_ops(all.iter());
    full_index.warm_sketches();
    let mut rng = Rng(7);
    let scattered = |k: usize, rng: &mut Rng| -> Vec<usize> {
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < k.min(n) {
            picked.insert((rng.next_u64() % n as u64) as usize);
        }
        picked.into_iter().collect()
    };
    // In the order of `SCENARIOS` (the two scattered sets draw from one stream).
    let scenarios: Vec<(&str, Vec<usize>)> = SCENARIOS
        .iter()
        .map(|&name| {
            let missing = match name {
                "identical" => vec![],
                "tail_100" => (n.saturating_sub(100)..n).collect(),
                "scattered_100" => scattered(100, &mut rng),
                "scattered_10000" => scattered(10_000, &mut rng),
                "one_side_empty" => (0..n).collect(),
                other => unreachable!("scenario {other} has no case"),
            };
            (name, missing)
        })
        .collect();
    // weft as configured by default (the sketch, falling back to the descent), and the
    // range-digest descent alone (`--width`: bits per split, default 4).
    let mut descent = Config::default();
    descent.reconcile = Reconcile::Descent;
    descent.descent_width = opts.width;
    let systems = [("weft", Config::default()), ("weft-descent", descent)];
    let only = opts.scenario.as_deref();
    for (name, missing) in scenarios {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let missing_set: std::collections::BTreeSet<usize> = missing.iter().copied().collect();
        let payload: u64 = missing
            .iter()
            .map(|&i| crdt_core::codec::encode_op(&all[i]).len() as u64 - 1)
            .sum();
        let partial: Vec<Op> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| !missing_set.contains(i))
            .map(|(_, o)| o.clone())
            .collect();
        let mut partial_log = MemoryStorage::new();
        partial_log.append(&partial).expect("append");
        let partial_index = Index::from_ops(&partial);
        partial_index.warm_sketches();
        let only_system = opts.system.as_deref();
        for (system, config) in &systems {
            if only_system.is_some_and(|o| o != *system) {
                continue;
            }
            // The best of `repeat` runs: the first run of a process is slower (fresh heap
            // pages fault in) and can pass 50 ms where later ones do not.
            let mut best: Option<Outcome> = None;
            for _ in 0..opts.repeat {
                let mut logs = [full.clone(), partial_log.clone()];
                let mut indexes = [full_index.clone(), partial_index.clone()];
                let out = drive(config, &mut logs, &mut indexes, n as u64);
                assert_eq!(
                    logs[0].len().expect("len"),
                    logs[1].len().expect("len"),
                    "{name}: not converged"
                );
                if best.as_ref().is_none_or(|b| out.cpu_ms < b.cpu_ms) {
                    best = Some(out);
                }
            }
            let out = best.expect("ran once");
            let overhead = out.wire_bytes.saturating_sub(payload);
            if json {
                println!(
                    "{{\"scenario\":\"{name}\",\"system\":\"{system}\",\"ops\":{n},\"diff\":{},\"round_trips\":{},\"payload_bytes\":{payload},\"overhead_bytes\":{overhead},\"cpu_ms\":{:.3},\"rt_done\":{},\"wall_ms\":{:.1},\"store_ms\":{:.1},\"decode_ms\":{:.1},\"send_ms\":{:.1},\"receive_ms\":{:.1},\"index_ms\":{:.1}}}",
                    missing.len(),
                    out.round_trips,
                    out.cpu_ms,
                    out.rt_done,
                    out.wall_ms,
                    out.store_ms,
                    out.decode_ms,
                    out.split_ms[0],
                    out.split_ms[1],
                    out.split_ms[2]
                );
            } else {
                println!(
                    "{name:<16} {system:<12}  ops {n:>8} diff {:>8}  RT {:>4} (done {:>4})  payload {payload:>10} B  overhead {overhead:>8} B  cpu {:>8.1} ms",
                    missing.len(),
                    out.round_trips,
                    out.rt_done,
                    out.cpu_ms
                );
            }
            rows.push(Row {
                scenario: name.into(),
                system: (*system).into(),
                ops: n,
                diff: missing.len(),
                round_trips: out.round_trips,
                payload,
                overhead: overhead as i64,
                cpu_ms: out.cpu_ms,
            });
        }
    }
}
