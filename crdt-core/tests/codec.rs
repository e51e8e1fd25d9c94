//! The op encoding: golden bytes, round trips, and hostile input.

use crdt_core::codec::{
    DecodeError, EncodedOps, FORMAT_VERSION, decode_op, decode_ops, encode_op, encode_ops,
};
use crdt_core::{
    CounterBaseline, ElemId, Op, OpId, Payload, ReplicaId, SeqBaseline, SeqContent, Value,
};
use hlc::Timestamp;
use proptest::prelude::*;

fn sample() -> Op {
    let ts = Timestamp::new(1_795_316_400_123, 2).unwrap();
    let dep = OpId::new(
        Timestamp::new(1_795_316_400_000, 0).unwrap(),
        ReplicaId::new(7),
    );
    Op {
        id: OpId::new(ts, ReplicaId::new(0x0102_0304_0506_0708)),
        schema_version: 1,
        collection: "todos".into(),
        key: "k1".into(),
        field: "title".into(),
        deps: vec![dep],
        payload: Payload::Write(Value::String("hi".into())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A change to these bytes is a format change: bump `FORMAT_VERSION` and update
/// docs/wire-format.md.
#[test]
fn golden_bytes_of_one_op() {
    let bytes = encode_op(&sample());
    assert_eq!(
        hex(&bytes),
        concat!(
            "01",               // format version
            "01a201323ffb0002", // id.ts: 48-bit ms, 16-bit counter
            "0102030405060708", // id.replica, big-endian
            "01",               // schema_version (varint)
            "05746f646f73",     // collection "todos"
            "026b31",           // key "k1"
            "057469746c65",     // field "title"
            "01",               // 1 dep
            "01a201323f800000",
            "0000000000000007", // dep op id
            "00",               // payload: Write
            "04",
            "026869", // Value::String "hi"
        )
    );
    assert_eq!(decode_op(&bytes).unwrap(), sample());
}

#[test]
fn golden_bytes_of_a_batch_and_other_payloads() {
    let mut counter = sample();
    counter.deps.clear();
    counter.payload = Payload::Counter {
        positive: 300,
        negative: 1,
    };
    let mut delete = sample();
    delete.field.clear();
    delete.deps.clear();
    delete.payload = Payload::Delete {
        counters: vec![CounterBaseline {
            field: "n".into(),
            totals: vec![(ReplicaId::new(1), 2, 3)],
        }],
        sequences: vec![],
    };
    let bytes = encode_ops(&[counter.clone(), delete.clone()]);
    let body = "01a201323ffb00020102030405060708010574\
6f646f73026b31";
    assert_eq!(
        hex(&bytes),
        format!(
            "0102{body}057469746c6500 01ac0201{body}00 00 04 01016e01 0000000000000001 02 03 00"
        )
        .replace(' ', "")
    );
    assert_eq!(decode_ops(&bytes).unwrap(), vec![counter, delete]);
}

#[test]
fn golden_bytes_of_text_ops() {
    let elem = |replica, seq| ElemId {
        replica: ReplicaId::new(replica),
        seq,
    };
    let mut insert = sample();
    insert.field = "body".into();
    insert.deps.clear();
    insert.payload = Payload::SeqInsert {
        seq: 300,
        left: Some(elem(7, 2)),
        right: None,
        content: SeqContent::Text("é!".into()),
    };
    let mut delete = insert.clone();
    delete.payload = Payload::SeqDelete {
        ranges: vec![(elem(7, 0), 3)],
    };
    let head = "01a201323ffb0002 0102030405060708 01 05746f646f73 026b31 04626f6479 00";
    assert_eq!(
        hex(&encode_ops(&[insert.clone(), delete.clone()])),
        format!(
            "01 02 {head} 05 ac02 01 0000000000000007 02 00 00 03c3a921 \
             {head} 06 01 0000000000000007 00 03"
        )
        .replace([' ', '\\'], "")
    );
    assert_eq!(
        decode_ops(&encode_ops(&[insert.clone(), delete.clone()])).unwrap(),
        vec![insert, delete]
    );
    let _ = SeqBaseline {
        field: String::new(),
        ranges: vec![],
    };
}

#[test]
fn bad_headers_and_trailing_bytes_are_errors() {
    assert_eq!(decode_op(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_op(&[9, 0]), Err(DecodeError::UnknownVersion(9)));
    let mut bytes = encode_op(&sample());
    bytes.push(0);
    assert_eq!(decode_op(&bytes), Err(DecodeError::Trailing(1)));
    let bytes = encode_op(&sample());
    for cut in 1..bytes.len() {
        assert!(
            decode_op(&bytes[..cut]).is_err(),
            "truncated at {cut} decoded"
        );
    }
}

#[test]
fn a_huge_claimed_length_does_not_allocate_it() {
    // A batch claiming u32::MAX ops, then nothing.
    let bytes = [FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(matches!(decode_ops(&bytes), Err(DecodeError::Malformed(_))));
    // A string claiming 2^60 bytes.
    let mut bytes = encode_op(&sample());
    bytes.truncate(18);
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    assert!(decode_op(&bytes).is_err());
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
        "[a-z]{0,6}".prop_map(Value::Ref),
    ]
}

fn arb_op_id() -> impl Strategy<Value = OpId> {
    (any::<u64>(), any::<u64>())
        .prop_map(|(t, r)| OpId::new(Timestamp::from_u64(t), ReplicaId::new(r)))
}

fn arb_elem_id() -> impl Strategy<Value = ElemId> {
    (any::<u64>(), any::<u64>()).prop_map(|(r, seq)| ElemId {
        replica: ReplicaId::new(r),
        seq,
    })
}

fn arb_op() -> impl Strategy<Value = Op> {
    let payload = prop_oneof![
        arb_value().prop_map(Payload::Write),
        (any::<u64>(), any::<u64>())
            .prop_map(|(positive, negative)| Payload::Counter { positive, negative }),
        arb_value().prop_map(Payload::SetAdd),
        arb_value().prop_map(Payload::SetRemove),
        (
            prop::collection::vec(
                (
                    "[a-z]{1,4}",
                    prop::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..3)
                ),
                0..3
            ),
            prop::collection::vec(
                (
                    "[a-z]{1,4}",
                    prop::collection::vec((arb_elem_id(), 1u64..1 << 40), 0..3)
                ),
                0..3
            )
        )
            .prop_map(|(c, q)| Payload::Delete {
                counters: c
                    .into_iter()
                    .map(|(field, t)| CounterBaseline {
                        field,
                        totals: t
                            .into_iter()
                            .map(|(r, p, n)| (ReplicaId::new(r), p, n))
                            .collect(),
                    })
                    .collect(),
                sequences: q
                    .into_iter()
                    .map(|(field, ranges)| SeqBaseline { field, ranges })
                    .collect(),
            }),
        (
            any::<u64>(),
            prop::option::of(arb_elem_id()),
            prop::option::of(arb_elem_id()),
            ".{1,5}"
        )
            .prop_map(|(seq, left, right, s)| Payload::SeqInsert {
                seq,
                left,
                right,
                content: SeqContent::Text(s),
            }),
        prop::collection::vec(arb_value(), 1..4).prop_map(|v| {
            Payload::SeqInsert {
                seq: 1,
                left: None,
                right: None,
                content: SeqContent::Values(v),
            }
        }),
        Just(Payload::Create),
        prop::collection::vec((any::<u64>(), any::<u64>(), 1u64..9), 1..3).prop_map(|r| {
            Payload::SeqDelete {
                ranges: r
                    .into_iter()
                    .map(|(a, b, n)| {
                        (
                            ElemId {
                                replica: ReplicaId::new(a),
                                seq: b,
                            },
                            n,
                        )
                    })
                    .collect(),
            }
        }),
    ];
    (
        arb_op_id(),
        any::<u32>(),
        "[a-z]{0,8}",
        ".{0,8}",
        "[a-z]{0,8}",
        prop::collection::vec(arb_op_id(), 0..4),
        payload,
    )
        .prop_map(
            |(id, schema_version, collection, key, field, deps, payload)| Op {
                id,
                schema_version,
                collection,
                key,
                field,
                deps,
                payload,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ops_round_trip(ops in prop::collection::vec(arb_op(), 0..8)) {
        for op in &ops {
            prop_assert_eq!(&decode_op(&encode_op(op)).unwrap(), op);
        }
        prop_assert_eq!(decode_ops(&encode_ops(&ops)).unwrap(), ops);
    }

    #[test]
    fn op_id_and_collection_read_the_front_of_an_op(op in arb_op(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_op(&op);
        let (id, collection) = crdt_core::codec::op_id_and_collection(&bytes[1..]).unwrap();
        prop_assert_eq!((id, collection), (op.id, op.collection.as_str()));
        // Cut short anywhere: an error where the front is cut, never a panic or a wrong answer.
        let cut = cut.index(bytes.len());
        if let Ok((id, collection)) = crdt_core::codec::op_id_and_collection(&bytes[1..1 + cut]) {
            prop_assert_eq!((id, collection), (op.id, op.collection.as_str()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_op(&bytes);
        let _ = decode_ops(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(op in arb_op(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode_op(&op);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_op(&bytes);
    }
}

/// What `EncodedOps::decode` must do with any bytes: accept exactly the batches that postcard
/// decodes and that encode back to the same bytes, and then give those ops, each with its own
/// id, collection and bytes.
fn check_encoded(bytes: &[u8]) -> Result<(), TestCaseError> {
    let lenient = decode_ops(bytes);
    let canonical = lenient
        .as_ref()
        .is_ok_and(|ops| encode_ops(ops).as_slice() == bytes);
    match EncodedOps::decode(bytes) {
        Ok(batch) => {
            prop_assert!(
                canonical,
                "accepted a batch postcard refuses or encodes otherwise"
            );
            let ops = lenient.unwrap();
            prop_assert_eq!(batch.as_bytes(), bytes);
            prop_assert_eq!(batch.len(), ops.len());
            prop_assert_eq!(&batch.to_ops().unwrap(), &ops);
            let named: std::collections::BTreeSet<&str> = batch.collections().collect();
            let used: std::collections::BTreeSet<&str> =
                ops.iter().map(|op| op.collection.as_str()).collect();
            prop_assert_eq!(
                named,
                used,
                "collections() names exactly the ops' collections"
            );
            for (got, op) in batch.iter().zip(&ops) {
                prop_assert_eq!(got.id(), op.id);
                prop_assert_eq!(got.collection(), op.collection.as_str());
                prop_assert_eq!(got.body(), &encode_op(op)[1..]);
                let framed = got.with_byte_before();
                prop_assert_eq!(
                    framed.len(),
                    encode_op(op).len(),
                    "one byte before the body"
                );
                prop_assert_eq!(&framed[1..], got.body());
                prop_assert_eq!(&got.decode().unwrap(), op);
            }
        }
        Err(e) => prop_assert!(!canonical, "refused a canonical batch: {e}"),
    }
    Ok(())
}

#[test]
fn an_over_long_varint_anywhere_is_refused_as_not_canonical() {
    let batch = encode_ops(&[sample()]);
    // Every varint of the sample batch: the count, the schema version, the lengths of the
    // three strings, the deps' count, the payload and value tags and the value's length.
    let at = [1, 18, 19, 25, 28, 34, 51, 52, 53];
    for &i in &at {
        assert!(batch[i] < 0x80, "byte {i} is not a one-byte varint");
        let mut long = batch.clone();
        long[i] |= 0x80;
        long.insert(i + 1, 0);
        assert_eq!(
            EncodedOps::decode(&long),
            Err(DecodeError::NotCanonical(i)),
            "byte {i}"
        );
        // Postcard reads the same ops from it, which is why the check exists.
        assert_eq!(decode_ops(&long), decode_ops(&batch), "byte {i}");
    }
    let ok = EncodedOps::decode(&batch).unwrap();
    assert_eq!(ok.to_ops().unwrap(), vec![sample()]);
    assert_eq!(EncodedOps::from_ops(&[sample()]).unwrap(), ok);
}

#[test]
fn encoded_batches_refuse_bad_headers_and_huge_counts() {
    assert_eq!(EncodedOps::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(
        EncodedOps::decode(&[9, 0]),
        Err(DecodeError::UnknownVersion(9))
    );
    let mut bytes = encode_ops(&[sample()]);
    bytes.push(0);
    assert_eq!(EncodedOps::decode(&bytes), Err(DecodeError::Trailing(1)));
    // A count of 2^63 and nothing after it: an error, without allocating for it.
    let huge = [
        FORMAT_VERSION,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x01,
    ];
    assert!(matches!(
        EncodedOps::decode(&huge),
        Err(DecodeError::Malformed(_))
    ));
    // A tenth varint byte above 1 overflows a u64.
    let over = [
        FORMAT_VERSION,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0x02,
    ];
    assert!(matches!(
        EncodedOps::decode(&over),
        Err(DecodeError::Malformed(_))
    ));
    let empty = EncodedOps::decode(&[FORMAT_VERSION, 0]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty, EncodedOps::from_ops(&[]).unwrap());
    assert_eq!(empty, EncodedOps::default());
}

/// One change to a batch's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encoded_batches_are_exactly_the_canonical_encodings(ops in prop::collection::vec(arb_op(), 0..6)) {
        let bytes = encode_ops(&ops);
        check_encoded(&bytes)?;
        prop_assert!(EncodedOps::decode(&bytes).is_ok());
        let made = EncodedOps::from_ops(&ops).unwrap();
        prop_assert_eq!(made.as_bytes(), &bytes[..]);
    }

    /// A batch keeps each collection name once where it can (see `Names` in
    /// codec/encoded.rs): runs of up to 160 names (more than its table has slots, so names
    /// share slots), repeated and interleaved, some a prefix of another, some empty or not
    /// ASCII, must each give their own name back; a byte of one name made into bad UTF-8
    /// (`0xff`, or a lone `0x80`), or into another letter, must be refused or read as
    /// postcard reads it.
    #[test]
    fn batches_over_many_collections_give_each_op_its_own(
        runs in prop::collection::vec((0usize..160, 1usize..4), 0..80),
        corrupt in prop::option::of((any::<prop::sample::Index>(), prop::sample::select(vec![0xffu8, b'x', 0x80]))),
    ) {
        let name = |n: usize| match n {
            0 => String::new(),
            1 => "é".to_owned(),
            n => format!("c{n}"),
        };
        let mut ops = Vec::new();
        for (n, len) in runs {
            for _ in 0..len {
                let mut op = sample();
                op.id = OpId::new(
                    Timestamp::new(1_795_316_400_000 + ops.len() as u64, 0).unwrap(),
                    ReplicaId::new(1),
                );
                op.collection = name(n);
                ops.push(op);
            }
        }
        let mut bytes = encode_ops(&ops);
        check_encoded(&bytes)?;
        if let Some((which, b)) = corrupt {
            // The collection's bytes follow the op's id (16 bytes), its one-byte schema
            // version and its one-byte length.
            let nonempty: Vec<usize> = ops
                .iter()
                .enumerate()
                .filter(|(_, op)| !op.collection.is_empty())
                .map(|(i, _)| i)
                .collect();
            if !nonempty.is_empty() {
                let i = nonempty[which.index(nonempty.len())];
                let body = |op: &Op| encode_op(op).len() - 1;
                let header = bytes.len() - ops.iter().map(body).sum::<usize>();
                let at = header + ops[..i].iter().map(body).sum::<usize>() + 18;
                prop_assert!(bytes[at..].starts_with(ops[i].collection.as_bytes()));
                bytes[at] = b;
                check_encoded(&bytes)?;
                if b != b'x' {
                    prop_assert!(EncodedOps::decode(&bytes).is_err(), "took a name that is not UTF-8");
                }
            }
        }
    }

    #[test]
    fn mutated_batches_are_accepted_exactly_when_canonical(
        ops in prop::collection::vec(arb_op(), 1..4),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = encode_ops(&ops);
        for m in mutations {
            match m {
                Mutation::Set(i, b) => {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), b),
                Mutation::Remove(i) => {
                    if bytes.len() > 1 {
                        bytes.remove(i.index(bytes.len()));
                    }
                }
            }
        }
        check_encoded(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_are_accepted_exactly_when_canonical(
        count in 0u8..3,
        body in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut bytes = vec![FORMAT_VERSION, count];
        bytes.extend(body);
        check_encoded(&bytes)?;
    }
}

/// An op of every payload and every value kind, with options both set and unset.
fn every_shape() -> Vec<Op> {
    let e = |r, seq| ElemId {
        replica: ReplicaId::new(r),
        seq,
    };
    let values = [
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(-300),
        Value::Float(f64::NAN),
        Value::String("é".into()),
        Value::Bytes(vec![0, 255]),
        Value::Timestamp(Timestamp::from_u64(1 << 40)),
        Value::Ref("r".into()),
    ];
    let mut payloads: Vec<Payload> = values.iter().cloned().map(Payload::Write).collect();
    payloads.extend([
        Payload::Counter {
            positive: 200,
            negative: 1,
        },
        Payload::SetAdd(Value::Int(1)),
        Payload::SetRemove(Value::Bool(true)),
        Payload::Delete {
            counters: vec![CounterBaseline {
                field: "c".into(),
                totals: vec![(ReplicaId::new(3), 128, 0)],
            }],
            sequences: vec![SeqBaseline {
                field: "t".into(),
                ranges: vec![(e(4, 129), 2)],
            }],
        },
        Payload::SeqInsert {
            seq: 5,
            left: Some(e(1, 2)),
            right: Some(e(3, 4)),
            content: SeqContent::Text("ab".into()),
        },
        Payload::SeqInsert {
            seq: 1,
            left: None,
            right: Some(e(3, 4)),
            content: SeqContent::Values(values.to_vec()),
        },
        Payload::SeqDelete {
            ranges: vec![(e(1, 1), 1)],
        },
        Payload::Create,
    ]);
    let mut ops: Vec<Op> = payloads
        .into_iter()
        .map(|payload| Op {
            payload,
            ..sample()
        })
        .collect();
    // The largest values of each width, and names whose lengths take two bytes.
    ops.extend([
        Op {
            schema_version: u32::MAX,
            collection: "c".repeat(200),
            payload: Payload::Counter {
                positive: u64::MAX,
                negative: 1 << 63,
            },
            ..sample()
        },
        Op {
            key: "k".repeat(16_384),
            payload: Payload::Write(Value::Int(i64::MIN)),
            ..sample()
        },
        Op {
            payload: Payload::SeqDelete {
                ranges: vec![(e(u64::MAX, u64::MAX), i64::MAX as u64)],
            },
            ..sample()
        },
    ]);
    ops
}

#[test]
fn every_one_byte_change_of_every_shape_is_accepted_exactly_when_canonical() {
    for op in every_shape() {
        let batch = encode_ops(std::slice::from_ref(&op));
        // Each byte made to say "more follows", with a zero byte after it: wherever a
        // one-byte varint ends, an over-long form of the same value.
        for i in 0..batch.len() {
            let mut bytes = batch.clone();
            bytes[i] |= 0x80;
            bytes.insert(i + 1, 0);
            if let Err(e) = check_encoded(&bytes) {
                panic!("{}: 00 after byte {i}: {e}", op.id);
            }
        }
        if op.key.len() > 1000 {
            continue; // the longest op: its lengths are checked, not its every byte
        }
        for i in 0..batch.len() {
            for b in 0..=255u8 {
                let mut bytes = batch.clone();
                bytes[i] = b;
                if let Err(e) = check_encoded(&bytes) {
                    panic!("{op:?}: byte {i} set to {b}: {e}");
                }
            }
        }
    }
}
