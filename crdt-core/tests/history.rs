//! The history encoding: golden bytes, round trips over random ops and typed runs, replicas
//! loaded from it, its size against the op encoding, and hostile input.

mod common;

use common::*;
use crdt_core::codec::{DecodeError, encode_ops};
use crdt_core::history::{HISTORY_FORMAT, decode_history, encode_history};
use crdt_core::{
    CounterBaseline, ElemId, Op, OpId, Payload, ReplicaId, SeqBaseline, SeqContent, Value,
    VersionVector,
};
use hlc::{ManualClock, Timestamp};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn elem(replica: u64, seq: u64) -> ElemId {
    ElemId {
        replica: ReplicaId::new(replica),
        seq,
    }
}

fn op(ms: u64, logical: u16, replica: u64, field: &str, payload: Payload) -> Op {
    Op {
        id: OpId::new(
            Timestamp::new(ms, logical).unwrap(),
            ReplicaId::new(replica),
        ),
        schema_version: 1,
        collection: "notes".into(),
        key: "n".into(),
        field: field.into(),
        deps: Vec::new(),
        payload,
    }
}

fn insert(seq: u64, left: Option<ElemId>, right: Option<ElemId>, text: &str) -> Payload {
    Payload::SeqInsert {
        seq,
        left,
        right,
        content: SeqContent::Text(text.into()),
    }
}

fn delete(id: ElemId, n: u64) -> Payload {
    Payload::SeqDelete {
        ranges: vec![(id, n)],
    }
}

/// A record created, "abc" typed (the third key one millisecond later), "c" backspaced.
fn small_batch() -> Vec<Op> {
    let ms = 1_795_316_400_000;
    vec![
        op(ms, 0, 7, "", Payload::Create),
        op(ms, 1, 7, "body", insert(0, None, None, "a")),
        op(ms, 2, 7, "body", insert(1, Some(elem(7, 0)), None, "b")),
        op(ms + 1, 0, 7, "body", insert(2, Some(elem(7, 1)), None, "c")),
        op(ms + 1, 1, 7, "body", delete(elem(7, 2), 1)),
    ]
}

/// A change to these bytes is a format change: bump `HISTORY_FORMAT` and update
/// docs/wire-format.md ("History batch").
#[test]
fn golden_bytes_of_a_small_batch() {
    let ops = small_batch();
    let bytes = encode_history(&ops);
    assert_eq!(
        hex(&bytes),
        concat!(
            "11",                              // format
            "01",                              // flags: in op id order
            "01 0000000000000007",             // 1 replica
            "02",                              // 2 targets:
            "056e6f746573 016e 00 01",         //   notes / n / "" / schema 1
            "056e6f746573 016e 04626f6479 01", //   notes / n / body / schema 1
            "05",                              // 5 ops
            "09",                              // records, 9 bytes:
            "00 00",                           //   general, target 0, replica 0
            "1d 03 00 00 00",                  //   insert run: 3 chars, seq +0, no origins
            "16 01",                           //   delete run: 1 op
            "0e",                              // times, 14 bytes, a literal group of 5:
            "08 808080f8c7cc80a203 02",        //   first ts, +1,
            "00 01 02",                        //   same ms, +1 ms counter 0, +1
            "01 00",                           // deletes: a backspace right after typing
            "00",                              // lens: none
            "03 616263",                       // text "abc"
            "02 00 07",                        // general: no deps, Create
        )
        .replace(' ', "")
    );
    assert_eq!(decode_history(&bytes).unwrap(), ops);
}

#[test]
fn typed_runs_collapse_and_round_trip() {
    let ops = small_batch();
    // One record for the create, one for the three keystrokes, one for the delete.
    let bytes = encode_history(&ops);
    assert!(bytes.len() < encode_ops(&ops).len() / 2, "{}", bytes.len());
    // A break in the run (right origin changes) starts another record and still round trips.
    let mut broken = ops.clone();
    if let Payload::SeqInsert { right, .. } = &mut broken[3].payload {
        *right = Some(elem(9, 9));
    }
    assert_eq!(decode_history(&encode_history(&broken)).unwrap(), broken);
}

/// A seeded history that looks like editing: runs of keystrokes by a few replicas (single and
/// multi-character, some across millisecond boundaries), backspaces, forward deletes, deletes
/// of ranges, and now and then an op of another kind, including ones that almost continue a
/// run (same seq, wrong origin; equal timestamps).
fn editing_history(seed: u64, len: usize) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    let mut next_seq = [0u64; 3];
    let mut ms = 1_795_316_400_000 + rng.random_range(0..1000u64);
    let mut logical: u16 = 0;
    let tick = |rng: &mut StdRng, ms: &mut u64, logical: &mut u16| {
        match rng.random_range(0..10) {
            0..=5 => *logical = logical.saturating_add(rng.random_range(0..3)),
            6..=8 => {
                *ms += rng.random_range(1..300);
                *logical = 0;
            }
            _ => {}
        }
        (*ms, *logical)
    };
    while ops.len() < len {
        let r = rng.random_range(0..3usize);
        let replica = r as u64 + 1;
        let (m, l) = tick(&mut rng, &mut ms, &mut logical);
        match rng.random_range(0..10) {
            0..=4 => {
                let mut left = (next_seq[r] > 0 && rng.random_bool(0.8))
                    .then(|| elem(replica, next_seq[r] - 1));
                let right = rng.random_bool(0.3).then(|| elem(4 - replica, 5));
                let (mut m, mut l) = (m, l);
                for _ in 0..rng.random_range(1..12) {
                    let text: String = match rng.random_range(0..4) {
                        0 => "héllo wörld".chars().take(rng.random_range(1..5)).collect(),
                        1 => "ü".into(),
                        _ => ((b'a' + rng.random_range(0..26u8)) as char).to_string(),
                    };
                    let seq = next_seq[r];
                    next_seq[r] += text.chars().count() as u64;
                    ops.push(op(m, l, replica, "body", insert(seq, left, right, &text)));
                    left = Some(elem(replica, next_seq[r] - 1));
                    if rng.random_bool(0.2) {
                        m += rng.random_range(1..200);
                        l = rng.random_range(0..3);
                    } else {
                        l = l.saturating_add(1);
                    }
                }
                ms = m;
                logical = l;
            }
            5..=7 => {
                let target = rng.random_range(0..3usize);
                let mut seq = rng.random_range(0..next_seq[target].max(1) + 3);
                let (mut m, mut l) = (m, l);
                for _ in 0..rng.random_range(1..8) {
                    let n = if rng.random_bool(0.8) {
                        1
                    } else {
                        rng.random_range(0..5)
                    };
                    ops.push(op(
                        m,
                        l,
                        replica,
                        "body",
                        delete(elem(target as u64 + 1, seq), n),
                    ));
                    seq = match rng.random_range(0..3) {
                        0 => seq.saturating_sub(1),
                        1 => seq + n,
                        _ => rng.random(),
                    };
                    l = l.saturating_add(1);
                    if rng.random_bool(0.1) {
                        m += 1;
                    }
                }
                ms = m;
                logical = l;
            }
            _ => {
                let payload = match rng.random_range(0..6) {
                    0 => Payload::Write(Value::String("t".into())),
                    1 => Payload::Counter {
                        positive: rng.random(),
                        negative: 3,
                    },
                    2 => insert(next_seq[r], None, None, ""),
                    3 => Payload::SeqDelete {
                        ranges: vec![(elem(1, 2), 3), (elem(2, 0), 1)],
                    },
                    4 => Payload::SeqInsert {
                        seq: next_seq[r],
                        left: None,
                        right: None,
                        content: SeqContent::Values(vec![Value::Int(5)]),
                    },
                    _ => Payload::Create,
                };
                let field = if matches!(payload, Payload::Create) {
                    ""
                } else {
                    "body"
                };
                let mut o = op(m, l, replica, field, payload);
                if rng.random_bool(0.2) {
                    o.deps.push(OpId::new(
                        Timestamp::from_u64(rng.random()),
                        ReplicaId::new(2),
                    ));
                }
                if rng.random_bool(0.1) {
                    o.schema_version = 2;
                }
                ops.push(o);
            }
        }
    }
    ops
}

fn check_editing_history(seed: u64) {
    let ops = editing_history(seed, 200);
    let bytes = encode_history(&ops);
    assert_eq!(decode_history(&bytes).unwrap(), ops, "seed {seed}");
    // In op id order the replicas' ops are grouped, and still come back in order.
    let mut sorted = ops.clone();
    sorted.sort_by_key(|op| op.id);
    sorted.dedup_by_key(|op| op.id);
    let grouped = encode_history(&sorted);
    assert_eq!(grouped[1], 1, "seed {seed}: the sorted flag");
    assert_eq!(decode_history(&grouped).unwrap(), sorted, "seed {seed}");
    // Cutting it anywhere is an error, never a panic.
    for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            decode_history(&bytes[..cut]).is_err(),
            "seed {seed}, cut {cut}"
        );
    }
}

#[test]
fn editing_histories_round_trip_once() {
    for seed in 0..64 {
        check_editing_history(seed);
    }
}

#[test]
#[ignore = "many seeds; run with --ignored"]
fn editing_histories_round_trip_many() {
    for seed in 0..20_000 {
        check_editing_history(seed);
    }
}

/// Types a text on a replica the way an editor does (a transaction per keystroke, the cursor
/// moving now and then, backspaces), in a few milliseconds per key.
fn typed_replica(seed: u64, keys: usize) -> (Mem, ManualClock) {
    typed_record(seed, keys, "n")
}

/// `keys` keystrokes (a few backspaces among them) typed into the body of note `key`.
fn typed_record(seed: u64, keys: usize, key: &str) -> (Mem, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, seed);
    r.insert("notes", Some(key), [("title", "t".into())])
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cursor = 0u64;
    let mut len = 0u64;
    for _ in 0..keys {
        if rng.random_bool(0.5) {
            clock.advance(rng.random_range(0..120));
        }
        if rng.random_bool(0.05) {
            cursor = rng.random_range(0..=len);
        }
        if cursor > 0 && rng.random_bool(0.15) {
            r.transact(|tx| tx.delete_text("notes", key, "body", cursor - 1, 1))
                .unwrap();
            cursor -= 1;
            len -= 1;
        } else {
            let c = ((b'a' + rng.random_range(0..26u8)) as char).to_string();
            r.transact(|tx| tx.insert_text("notes", key, "body", cursor, &c))
                .unwrap();
            cursor += 1;
            len += 1;
        }
    }
    (r, clock)
}

#[test]
fn a_typed_document_loads_from_its_history_and_is_much_smaller() {
    let (source, clock) = typed_replica(11, 3000);
    let ops = source.ops_since(&VersionVector::new()).unwrap();
    let bytes = encode_history(&ops);
    assert_eq!(bytes[0], HISTORY_FORMAT);
    assert_eq!(decode_history(&bytes).unwrap(), ops);
    let per_op = encode_ops(&ops).len();
    // Interned targets, run-merged keystrokes and delta timestamps: several times smaller.
    assert!(
        bytes.len() * 8 < per_op,
        "history {} bytes, per-op {} bytes for {} ops",
        bytes.len(),
        per_op,
        ops.len()
    );
    let mut fresh = replica(&clock, 99);
    let outcome = fresh.apply_encoded(&bytes).unwrap();
    assert_eq!(outcome.applied.len(), ops.len());
    assert_eq!(
        fresh.text("notes", "n", "body").unwrap(),
        source.text("notes", "n", "body").unwrap()
    );
    assert_eq!(snapshot(&fresh), snapshot(&source));
}

/// A keystroke takes about one byte of a batch, and a decoded op holds its own copy of the
/// record's key: typing into a record with a long key must still decode (it did not for keys
/// over about 40 bytes, when the copies counted against 256 decoded bytes per input byte).
#[test]
fn typing_into_a_record_with_a_long_key_round_trips() {
    for (seed, len) in [(1, 36), (2, 100), (3, 1_000)] {
        let key = "k".repeat(len);
        let (mut source, clock) = typed_record(seed, 300, &key);
        // Then a burst at the end, a keystroke a millisecond: the cheapest ops to encode.
        let start = source.text("notes", &key, "body").unwrap().chars().count() as u64;
        for end in start..start + 20_000 {
            clock.advance(1);
            source
                .transact(|tx| tx.insert_text("notes", &key, "body", end, "x"))
                .unwrap();
        }
        let ops = source.ops_since(&VersionVector::new()).unwrap();
        let bytes = encode_history(&ops);
        if len >= 100 {
            // Past what 256 decoded bytes per input byte allowed, names included.
            let decoded = ops.len() * (size_of::<Op>() + len);
            assert!(
                decoded > 256 * bytes.len(),
                "{decoded} from {} bytes",
                bytes.len()
            );
        }
        assert_eq!(
            decode_history(&bytes).as_ref(),
            Ok(&ops),
            "key of {len} bytes"
        );
        let mut fresh = replica(&clock, 99);
        fresh.apply_encoded(&bytes).unwrap();
        assert_eq!(snapshot(&fresh), snapshot(&source), "key of {len} bytes");
    }
}

#[test]
fn concurrent_typing_still_forms_runs() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    a.insert("notes", Some("n"), [("title", "t".into())])
        .unwrap();
    sync(&a, &mut b);
    // Both type 200 keys at once, their ops interleaving in op id order.
    for i in 0..200u64 {
        clock.advance(1);
        a.transact(|tx| tx.insert_text("notes", "n", "body", i, "a"))
            .unwrap();
        b.transact(|tx| tx.insert_text("notes", "n", "body", i, "b"))
            .unwrap();
    }
    sync(&a, &mut b);
    sync(&b, &mut a);
    let ops = a.ops_since(&VersionVector::new()).unwrap();
    assert!(ops.windows(2).any(|w| w[0].id.replica != w[1].id.replica));
    let bytes = encode_history(&ops);
    assert_eq!(decode_history(&bytes).unwrap(), ops);
    // Two runs of 200 keys: about a byte of text and a byte of time per key, plus headers.
    assert!(
        bytes.len() < 2 * 400 + 120,
        "{} bytes for {} ops",
        bytes.len(),
        ops.len()
    );
    let mut fresh = replica(&clock, 3);
    fresh.apply_encoded(&bytes).unwrap();
    assert_eq!(snapshot(&fresh), snapshot(&a));
}

#[test]
fn hostile_headers_are_errors() {
    assert_eq!(decode_history(&[]), Err(DecodeError::Empty));
    assert_eq!(
        decode_history(&[0x01, 0]),
        Err(DecodeError::UnknownVersion(1))
    );
    // Counts that the input cannot hold: 2^60 replicas, then 2^60 targets, then 2^60 ops.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
    for prefix in [&[][..], &[0x00][..], &[0x00, 0x00][..]] {
        let mut bytes = vec![HISTORY_FORMAT];
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(&huge);
        bytes.extend_from_slice(&[0; 16]);
        assert!(
            matches!(decode_history(&bytes), Err(DecodeError::Malformed(_))),
            "{prefix:?}"
        );
    }
    // Trailing bytes after the last column.
    let mut bytes = encode_history(&small_batch());
    bytes.push(0);
    assert_eq!(decode_history(&bytes), Err(DecodeError::Trailing(1)));
    // Every truncation fails.
    let bytes = encode_history(&small_batch());
    for cut in 0..bytes.len() {
        assert!(decode_history(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_run_cannot_claim_more_ops_than_the_input_holds() {
    // One replica, one target, 5 ops claimed, one insert run (`run`: head, replica, n and
    // maybe total) over a text of 5 chars.
    let batch = |run: &[u8]| {
        let mut b = vec![HISTORY_FORMAT, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 7];
        b.extend_from_slice(&[0x01, 0x05, b'n', b'o', b't', b'e', b's', 0x01, b'n']);
        b.extend_from_slice(&[0x04, b'b', b'o', b'd', b'y', 0x01, 0x05]);
        let mut records = run.to_vec();
        records.extend_from_slice(&[0x00, 0x00, 0x00]);
        b.push(records.len() as u8);
        b.extend_from_slice(&records);
        b.extend_from_slice(&[0x02, 0x07, 0x00]); // times: 0 repeated 5 times
        b.extend_from_slice(&[0x00, 0x00]); // deletes, lens
        b.extend_from_slice(&[0x05, b'a', b'b', b'c', b'd', b'e', 0x00]);
        b
    };
    // A run of 5 single chars.
    let ops = decode_history(&batch(&[0x09, 0x00, 0x05])).unwrap();
    assert_eq!(ops.len(), 5);
    let mut huge = vec![0x09, 0x00];
    huge.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]); // 2^40 ops
    let mut long = vec![0x01, 0x00, 0x05];
    long.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]); // 2^40 chars
    for run in [
        &huge[..],
        &long[..],
        &[0x09, 0x00, 0x00][..],
        &[0x19, 0x00, 0x05][..],
    ] {
        assert!(
            matches!(decode_history(&batch(run)), Err(DecodeError::Malformed(_))),
            "{run:?}"
        );
    }
}

#[test]
fn bad_utf8_in_the_text_is_an_error() {
    let mut bytes = encode_history(&small_batch());
    let at = bytes
        .windows(3)
        .position(|w| w == b"abc")
        .expect("the text column");
    bytes[at + 1] = 0xff;
    assert!(matches!(
        decode_history(&bytes),
        Err(DecodeError::Malformed(_))
    ));
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        any::<u64>().prop_map(|t| Value::Timestamp(Timestamp::from_u64(t))),
    ]
}

fn arb_elem() -> impl Strategy<Value = ElemId> {
    (0u64..3, any::<u64>()).prop_map(|(r, seq)| elem(r, seq))
}

/// Ops of every kind with any ids, from few replicas and targets so that runs can form.
fn arb_op() -> impl Strategy<Value = Op> {
    let payload = prop_oneof![
        arb_value().prop_map(Payload::Write),
        (any::<u64>(), any::<u64>())
            .prop_map(|(positive, negative)| Payload::Counter { positive, negative }),
        arb_value().prop_map(Payload::SetAdd),
        arb_value().prop_map(Payload::SetRemove),
        (
            "[a-z]{1,3}",
            prop::collection::vec((arb_elem(), any::<u64>()), 0..3)
        )
            .prop_map(|(field, ranges)| Payload::Delete {
                counters: vec![CounterBaseline {
                    field: field.clone(),
                    totals: vec![(ReplicaId::new(1), 2, 3)],
                }],
                sequences: vec![SeqBaseline { field, ranges }],
            }),
        (
            any::<u64>(),
            prop::option::of(arb_elem()),
            prop::option::of(arb_elem()),
            ".{0,4}"
        )
            .prop_map(|(seq, left, right, s)| insert(seq, left, right, &s)),
        prop::collection::vec(arb_value(), 0..3).prop_map(|v| Payload::SeqInsert {
            seq: 1,
            left: None,
            right: None,
            content: SeqContent::Values(v),
        }),
        prop::collection::vec((arb_elem(), any::<u64>()), 0..3)
            .prop_map(|ranges| Payload::SeqDelete { ranges }),
        Just(Payload::Create),
    ];
    (
        any::<u64>(),
        0u64..3,
        0u32..2,
        prop::sample::select(vec!["a", "b"]),
        prop::collection::vec((any::<u64>(), 0u64..3), 0..2),
        payload,
    )
        .prop_map(|(ts, replica, schema_version, key, deps, payload)| Op {
            id: OpId::new(Timestamp::from_u64(ts), ReplicaId::new(replica)),
            schema_version,
            collection: "c".into(),
            key: key.into(),
            field: "f".into(),
            deps: deps
                .into_iter()
                .map(|(t, r)| OpId::new(Timestamp::from_u64(t), ReplicaId::new(r)))
                .collect(),
            payload,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_ops_round_trip(ops in prop::collection::vec(arb_op(), 0..12)) {
        prop_assert_eq!(decode_history(&encode_history(&ops)).unwrap(), ops);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut with_format = vec![HISTORY_FORMAT];
        with_format.extend_from_slice(&bytes);
        let _ = decode_history(&bytes);
        let _ = decode_history(&with_format);
    }

    #[test]
    fn mutated_histories_never_panic(
        seed in 0u64..1000,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_history(&editing_history(seed, 40));
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(ops) = decode_history(&bytes) {
            // Whatever decodes, encodes back to something that decodes the same.
            prop_assert_eq!(decode_history(&encode_history(&ops)).unwrap(), ops);
        }
    }
}
