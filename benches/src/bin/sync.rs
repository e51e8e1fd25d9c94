//! The sync protocol on large logs: round trips, payload and overhead bytes, CPU time.
//!
//! `cargo run --release -p benches --bin sync -- --json [--ops N]` prints one JSON object per
//! scenario. Two `merkle_sync::Session`s talk over a virtual link with 50 ms one-way latency
//! (RTT 100 ms): `round_trips` is the virtual time at which both logs hold the union, in RTTs
//! (half round trips show as .5); `rt_done` is when both sessions know they are synced.
//! `payload_bytes` is the encoded size of the ops one side lacked (as in an op batch, without a
//! version byte each); `overhead_bytes` is
//! everything else on the wire. `cpu_ms` is the time spent in both sessions and in indexing
//! the received ops (building the logs and indexes beforehand is not counted).
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

use std::collections::BTreeMap;
use std::time::Instant;

use benches::sync_peers::{self, PeerOutcome};
use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
use merkle_sync::{Config, Event, Index, Scope, Session};

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
    cpu_ms: f64,
}

#[allow(clippy::disallowed_methods, reason = "the bench times itself")]
fn drive(logs: &mut [BTreeMap<OpId, Op>; 2], indexes: &mut [Index; 2], union_len: u64) -> Outcome {
    const LATENCY: u64 = 50;
    let scope = Scope::new(["items"]);
    let start = Instant::now();
    let mut sessions =
        [0, 1].map(|i| Session::new(0, scope.clone(), Config::default(), &indexes[i]));
    let mut flight: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    let mut now = 0;
    let mut wire_bytes = 0;
    let mut union_at = None;
    loop {
        for (from, s) in sessions.iter_mut().enumerate() {
            while let Some(bytes) = s
                .poll_transmit(now, &indexes[from], &logs[from])
                .expect("transmit")
            {
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
            sessions[to]
                .handle_message(now, &bytes, &indexes[to])
                .expect("handle");
            while let Some(e) = sessions[to].poll_event() {
                if let Event::Ops(ops) = e {
                    for op in ops {
                        indexes[to].insert_op(&op);
                        logs[to].insert(op.id, op);
                    }
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
        cpu_ms: start.elapsed().as_secs_f64() * 1000.0,
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

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | system | ops | diff | round trips | payload B | overhead B | cpu ms |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.scenario, r.system, r.ops, r.diff, r.round_trips, r.payload, r.overhead, r.cpu_ms
        ));
    }
    t
}

fn peers(args: &[String], json: bool, rows: &mut Vec<Row>) {
    let n = flag(args, "--peer-ops", 50_000);
    let actors = flag(args, "--peer-actors", 1_000).clamp(1, n.max(1));
    let changes = sync_peers::automerge_changes(n, actors);
    let updates = sync_peers::yrs_updates(n, actors);
    for scenario in [
        "identical",
        "tail_100",
        "scattered_100",
        "scattered_10000",
        "one_side_empty",
    ] {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let mut rows = Vec::new();
    if !args.iter().any(|a| a == "--peers-only") {
        weft(&args, json, &mut rows);
    }
    if !args.iter().any(|a| a == "--no-peers") {
        peers(&args, json, &mut rows);
    }
    if json {
        eprint!("{}", table(&rows));
    } else {
        print!("\n{}", table(&rows));
    }
}

fn weft(args: &[String], json: bool, rows: &mut Vec<Row>) {
    let n = flag(args, "--ops", 1_000_000);
    let all = workload(n);
    let full: BTreeMap<OpId, Op> = all.iter().map(|o| (o.id, o.clone())).collect();
    let full_index = Index::from_ops(all.iter());
    let mut rng = Rng(7);
    let scattered = |k: usize, rng: &mut Rng| -> Vec<usize> {
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < k.min(n) {
            picked.insert((rng.next_u64() % n as u64) as usize);
        }
        picked.into_iter().collect()
    };
    let scenarios: Vec<(&str, Vec<usize>)> = vec![
        ("identical", vec![]),
        ("tail_100", (n.saturating_sub(100)..n).collect()),
        ("scattered_100", scattered(100, &mut rng)),
        ("scattered_10000", scattered(10_000, &mut rng)),
        ("one_side_empty", (0..n).collect()),
    ];
    for (name, missing) in scenarios {
        let missing_set: std::collections::BTreeSet<usize> = missing.iter().copied().collect();
        let payload: u64 = missing
            .iter()
            .map(|&i| crdt_core::codec::encode_op(&all[i]).len() as u64 - 1)
            .sum();
        let partial: Vec<&Op> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| !missing_set.contains(i))
            .map(|(_, o)| o)
            .collect();
        let mut logs = [
            full.clone(),
            partial.iter().map(|o| (o.id, (*o).clone())).collect(),
        ];
        let mut indexes = [full_index.clone(), Index::from_ops(partial.iter().copied())];
        let out = drive(&mut logs, &mut indexes, n as u64);
        assert_eq!(logs[0].len(), logs[1].len(), "{name}: not converged");
        let overhead = out.wire_bytes.saturating_sub(payload);
        if json {
            println!(
                "{{\"scenario\":\"{name}\",\"system\":\"weft\",\"ops\":{n},\"diff\":{},\"round_trips\":{},\"payload_bytes\":{payload},\"overhead_bytes\":{overhead},\"cpu_ms\":{:.1},\"rt_done\":{}}}",
                missing.len(),
                out.round_trips,
                out.cpu_ms,
                out.rt_done
            );
        } else {
            println!(
                "{name:<16} weft  ops {n:>8} diff {:>8}  RT {:>4} (done {:>4})  payload {payload:>10} B  overhead {overhead:>8} B  cpu {:>8.1} ms",
                missing.len(),
                out.round_trips,
                out.rt_done,
                out.cpu_ms
            );
        }
        rows.push(Row {
            scenario: name.into(),
            system: "weft".into(),
            ops: n,
            diff: missing.len(),
            round_trips: out.round_trips,
            payload,
            overhead: overhead as i64,
            cpu_ms: out.cpu_ms,
        });
    }
}
