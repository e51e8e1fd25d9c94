//! Golden bytes of the sync messages (`docs/wire-format.md`, "Sync messages").
//!
//! The message types are private to the crate, so the fixtures are the transcripts of two
//! sessions driven with fixed logs in lockstep: every message either side sends is pinned as
//! hex, in order. Together the three transcripts hold every message kind (Hello, Status,
//! Sketch, More, Want, Ops, Ranges). The pinned bytes are then replayed into fresh sessions, which must accept
//! each one (it decodes) and hand out exactly the fixed ops (the Ops frames decode back to
//! them). Any change to the encoding, the digests or the protocol flow fails here: update the
//! fixtures only as a deliberate format decision, with `PROTOCOL_VERSION` or the wire-format
//! document changed alongside.

use std::collections::BTreeMap;

use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
use merkle_sync::{Config, Event, Index, MessageError, Reconcile, Scope, Session, SessionError};

fn op(ms: u64, replica: u64) -> Op {
    Op {
        id: OpId::new(
            hlc::Timestamp::new(1_700_000_000_000 + ms, 0).expect("in range"),
            ReplicaId::new(replica),
        ),
        schema_version: 1,
        collection: "todos".into(),
        key: format!("k{ms}"),
        field: "title".into(),
        deps: vec![],
        payload: Payload::Write(Value::String(format!("v{ms}"))),
    }
}

struct Side {
    log: BTreeMap<OpId, Op>,
    index: Index,
}

impl Side {
    fn new(ops: &[Op]) -> Self {
        let log: BTreeMap<OpId, Op> = ops.iter().map(|o| (o.id, o.clone())).collect();
        let index = Index::from_ops(log.values());
        Self { log, index }
    }

    /// Handles one message; returns the ops it handed out.
    fn receive(&mut self, session: &mut Session, now: u64, bytes: &[u8]) -> Vec<Op> {
        session
            .handle_message(now, bytes, &self.index)
            .unwrap_or_else(|e| panic!("message {} refused: {e}", hex(bytes)));
        let mut got = Vec::new();
        while let Some(e) = session.poll_event() {
            if let Event::Ops(ops) = e {
                for op in ops.to_ops().expect("a session hands out ops that decode") {
                    self.index.insert_op(&op);
                    self.log.insert(op.id, op.clone());
                    got.push(op);
                }
            }
        }
        got
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn scope() -> Scope {
    Scope::new(["todos"])
}

/// A small sketch in chunks of one symbol, so that the scattered transcript stays short and
/// exercises More.
fn config() -> Config {
    let mut c = Config::default();
    c.symbols_per_message = 1;
    c.max_sketch_symbols = 3;
    c
}

/// Drives two sessions in lockstep rounds (both transmit, then both receive) and returns every
/// message as (sender, bytes), in the order of delivery. With `swap_sketches`, the sketch chunks after the first arrive
/// in reverse order (so the receiver asks for the gap with More).
fn transcript(a: &[Op], b: &[Op], swap_sketches: bool) -> Vec<(usize, Vec<u8>)> {
    transcript_with(&config(), a, b, swap_sketches)
}

/// The descent in halves (one bit), so that the transcript has digests and a reply.
fn descent_config() -> Config {
    let mut c = Config::default();
    c.reconcile = Reconcile::Descent;
    c.descent_width = 1;
    c
}

fn transcript_with(
    config: &Config,
    a: &[Op],
    b: &[Op],
    swap_sketches: bool,
) -> Vec<(usize, Vec<u8>)> {
    let mut sides = [Side::new(a), Side::new(b)];
    let mut sessions = [0, 1].map(|i| Session::new(0, scope(), config.clone(), &sides[i].index));
    let mut out = Vec::new();
    for round in 1..=20 {
        let now = round * 10;
        let mut batches: [Vec<Vec<u8>>; 2] = [vec![], vec![]];
        for i in 0..2 {
            let side = &sides[i];
            while let Some(m) = sessions[i]
                .poll_transmit(now, &side.index, &side.log)
                .expect("transmit")
            {
                batches[i].push(m);
            }
        }
        if batches.iter().all(Vec::is_empty) && sessions.iter().all(Session::is_synced) {
            assert_eq!(sides[0].log, sides[1].log, "converged to different logs");
            return out;
        }
        for (from, mut batch) in batches.into_iter().enumerate() {
            if swap_sketches {
                // Chunk 0 first (a session ignores later chunks of a sketch it has not
                // begun), then the rest in reverse.
                let at: Vec<usize> = (0..batch.len())
                    .filter(|&j| batch[j][0] == 3)
                    .skip(1)
                    .collect();
                let firsts: Vec<Vec<u8>> = at.iter().rev().map(|&j| batch[j].clone()).collect();
                for (&j, m) in at.iter().zip(firsts) {
                    batch[j] = m;
                }
            }
            let to = 1 - from;
            for m in batch {
                out.push((from, m.clone()));
                sides[to].receive(&mut sessions[to], now, &m);
            }
        }
    }
    let listing: Vec<(usize, String)> = out.iter().map(|(i, m)| (*i, hex(m))).collect();
    panic!("no convergence in 20 rounds: {listing:#?}");
}

/// Side B is only behind: it lacks the last two ops of A. One round trip: Hellos, A pushes
/// the tail in one Ops frame, B announces its new root with Status.
fn tail_logs() -> (Vec<Op>, Vec<Op>) {
    let a: Vec<Op> = (1..=4).map(|ms| op(ms, 1)).collect();
    let b = a[..2].to_vec();
    (a, b)
}

/// Scattered: each side lacks one op the other holds below both frontiers, so the sketch
/// (in one-symbol chunks, delivered out of order) finds them, then Want and Ops.
fn scattered_logs() -> (Vec<Op>, Vec<Op>) {
    let a = vec![op(1, 1), op(2, 1), op(3, 2), op(5, 1), op(6, 2)];
    let b = vec![op(1, 1), op(3, 2), op(4, 2), op(5, 1), op(6, 2)];
    (a, b)
}

const TAIL: &[(usize, &str)] = &[
    (
        0,
        "010451ff5bc8e84c4881b1c50dcb9be2172301db30126ef0319a391ce7d58b23655c2a56244d79d297b9c6529d8f1a67f44fc604010000000000000001018bcfe568040000",
    ),
    (
        1,
        "010451ff5bc8e84c4881b1c50dcb9be2172301aa12775ed2eff766f3c400e9e3f3aadc8be41e48b61cff0d259200e9e33fb85802010000000000000001018bcfe568020000",
    ),
    (
        0,
        "060102018bcfe56803000000000000000000010105746f646f73026b33057469746c65000004027633018bcfe56804000000000000000000010105746f646f73026b34057469746c65000004027634",
    ),
    (
        1,
        "02db30126ef0319a391ce7d58b23655c2a56244d79d297b9c6529d8f1a67f44fc604",
    ),
];

const SCATTERED: &[(usize, &str)] = &[
    (
        0,
        "010451ff5bc8e84c4881b1c50dcb9be21723018f133fdc36cefbb70d98e417a5bf9b1653b164562170eaadafd934324169540105020000000000000001018bcfe5680500000000000000000002018bcfe568060000",
    ),
    (
        1,
        "010451ff5bc8e84c4881b1c50dcb9be2172301ac988c0ddca797657511cb84161f05e58078de5b223ae989eaa9910604eb485e05020000000000000001018bcfe5680500000000000000000002018bcfe568060000",
    ),
    (
        1,
        "0301020000000000000001018bcfe5680500000000000000000002018bcfe56806000000030105018bcfe568050000000000000000000228945fe6",
    ),
    (
        1,
        "0301020000000000000001018bcfe5680500000000000000000002018bcfe56806000002030103018bcfe568060000000000000000000161391343",
    ),
    (
        1,
        "0301020000000000000001018bcfe5680500000000000000000002018bcfe568060000010301040000000000060000000000000000000054726f70",
    ),
    (0, "04010101"),
    (0, "050101000000000000000284d095ffbc310000"),
    (
        0,
        "060101018bcfe56802000000000000000000010105746f646f73026b32057469746c65000004027632",
    ),
    (
        1,
        "0301020000000000000001018bcfe5680500000000000000000002018bcfe568060000010201040000000000060000000000000000000054726f70",
    ),
    (
        1,
        "060101018bcfe56804000000000000000000020105746f646f73026b34057469746c65000004027634",
    ),
    (
        1,
        "028befa47dd576100dc3b5e8b8184fcc631fa4eda73756dbf3fb2d304637384c0d06",
    ),
    (
        0,
        "028befa47dd576100dc3b5e8b8184fcc631fa4eda73756dbf3fb2d304637384c0d06",
    ),
];

fn check(name: &str, got: &[(usize, Vec<u8>)], want: &[(usize, &str)]) {
    let got: Vec<(usize, String)> = got.iter().map(|(i, m)| (*i, hex(m))).collect();
    let want: Vec<(usize, String)> = want.iter().map(|(i, m)| (*i, (*m).to_owned())).collect();
    if got != want {
        let mut listing = String::new();
        for (i, m) in &got {
            listing.push_str(&format!("    ({i}, \"{m}\"),\n"));
        }
        panic!("{name}: the wire bytes changed; the transcript is now:\n{listing}");
    }
}

#[test]
fn tail_transcript_is_pinned() {
    let (a, b) = tail_logs();
    check("tail", &transcript(&a, &b, false), TAIL);
}

#[test]
fn scattered_transcript_is_pinned() {
    let (a, b) = scattered_logs();
    check("scattered", &transcript(&a, &b, true), SCATTERED);
}

/// The scattered logs again, reconciled by the range-digest descent (the Ranges message, tag
/// 7) instead of the sketch.
const DESCENT: &[(usize, &str)] = &[
    (
        0,
        "010451ff5bc8e84c4881b1c50dcb9be21723018f133fdc36cefbb70d98e417a5bf9b1653b164562170eaadafd934324169540105020000000000000001018bcfe5680500000000000000000002018bcfe568060000",
    ),
    (
        1,
        "010451ff5bc8e84c4881b1c50dcb9be2172301ac988c0ddca797657511cb84161f05e58078de5b223ae989eaa9910604eb485e05020000000000000001018bcfe5680500000000000000000002018bcfe568060000",
    ),
    (
        1,
        "070100002d01018bcfe5680002018bcfe5680100000000000000000001018bcfe5680300000000000000000002030ae176f13b38757d8610b8ee1f161a1dc3bdc5b7302427737498eb8f98e224ff",
    ),
    (
        0,
        "0701002e2e01018bcfe5680401018bcfe568050000000000000000000101018bcfe5680600000000000000000002",
    ),
    (
        0,
        "060101018bcfe56802000000000000000000010105746f646f73026b32057469746c65000004027632",
    ),
    (
        1,
        "060101018bcfe56804000000000000000000020105746f646f73026b34057469746c65000004027634",
    ),
    (
        1,
        "028befa47dd576100dc3b5e8b8184fcc631fa4eda73756dbf3fb2d304637384c0d06",
    ),
    (
        0,
        "028befa47dd576100dc3b5e8b8184fcc631fa4eda73756dbf3fb2d304637384c0d06",
    ),
];

#[test]
fn descent_transcript_is_pinned() {
    let (a, b) = scattered_logs();
    check(
        "descent",
        &transcript_with(&descent_config(), &a, &b, false),
        DESCENT,
    );
}

#[test]
fn fixtures_hold_every_message_kind() {
    let mut tags: Vec<u8> = TAIL
        .iter()
        .chain(SCATTERED)
        .chain(DESCENT)
        .map(|(_, m)| unhex(m)[0])
        .collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(
        tags,
        [1, 2, 3, 4, 5, 6, 7],
        "Hello, Status, Sketch, More, Want, Ops, Ranges"
    );
}

/// Replays pinned bytes, in order, into fresh sessions over the same logs: every message must
/// be accepted, and the ops handed out must be exactly what the receiver lacked.
fn replay(a: &[Op], b: &[Op], fixture: &[(usize, &str)]) {
    replay_with(&config(), a, b, fixture);
}

fn replay_with(config: &Config, a: &[Op], b: &[Op], fixture: &[(usize, &str)]) {
    let mut sides = [Side::new(a), Side::new(b)];
    let mut sessions = [0, 1].map(|i| Session::new(0, scope(), config.clone(), &sides[i].index));
    let mut received: [Vec<Op>; 2] = [vec![], vec![]];
    for (from, m) in fixture {
        let to = 1 - from;
        let got = sides[to].receive(&mut sessions[to], 10, &unhex(m));
        received[to].extend(got);
    }
    let lacked = |have: &[Op], other: &[Op]| -> Vec<Op> {
        let mut v: Vec<Op> = other
            .iter()
            .filter(|o| !have.iter().any(|h| h.id == o.id))
            .cloned()
            .collect();
        v.sort_by_key(|o| o.id);
        v
    };
    for r in &mut received {
        r.sort_by_key(|o| o.id);
    }
    assert_eq!(received[0], lacked(a, b), "ops decoded by A");
    assert_eq!(received[1], lacked(b, a), "ops decoded by B");
    assert_eq!(sides[0].log, sides[1].log);
}

#[test]
fn pinned_bytes_decode_back() {
    let (a, b) = tail_logs();
    replay(&a, &b, TAIL);
    let (a, b) = scattered_logs();
    replay(&a, &b, SCATTERED);
    replay_with(&descent_config(), &a, &b, DESCENT);
}

#[test]
fn pinned_bytes_with_a_trailing_byte_are_refused() {
    let (a, _) = tail_logs();
    for (_, m) in TAIL.iter().chain(SCATTERED).chain(DESCENT) {
        let side = Side::new(&a);
        let mut s = Session::new(0, scope(), config(), &side.index);
        let mut bytes = unhex(m);
        bytes.push(0);
        let err = s.handle_message(10, &bytes, &side.index).unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::Message(MessageError::Trailing(1) | MessageError::Ops(_))
            ),
            "{m}: {err}"
        );
    }
}
