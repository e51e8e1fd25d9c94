//! Ops from untrusted bytes: decoding one op or a batch never panics, whatever decodes encodes
//! back to the same ops, and applying the batch to a replica neither panics nor depends on
//! the order of delivery or on duplicates. History batches get the same round-trip check. A
//! batch checked without decoding (`EncodedOps`, as sync receives ops) is accepted exactly
//! when postcard decodes it and encodes those ops back to the same bytes, and then gives
//! those ops.
#![no_main]

mod common;

use std::collections::BTreeMap;

use crdt_core::codec::{EncodedOps, decode_op, decode_ops, encode_op, encode_ops};
use crdt_core::history::{decode_history, encode_history};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = decode_op(data) {
        assert_eq!(decode_op(&encode_op(&op)).as_ref(), Ok(&op));
    }
    // A history batch (first byte 0x11) decodes to the same ops again after a round trip, and
    // applying it as a peer would send it never panics.
    if let Ok(ops) = decode_history(data) {
        assert_eq!(decode_history(&encode_history(&ops)).as_ref(), Ok(&ops));
        let mut h = common::replica(3);
        let _ = h.apply_encoded(data);
    }
    let decoded = decode_ops(data);
    let canonical = decoded.as_ref().is_ok_and(|ops| encode_ops(ops) == data);
    match EncodedOps::decode(data) {
        Ok(batch) => {
            assert!(canonical, "accepted bytes that are not the encoding of their ops");
            assert_eq!(batch.to_ops().as_ref(), decoded.as_ref());
            for (op, got) in decoded.iter().flatten().zip(batch.iter()) {
                assert_eq!((got.id(), got.collection()), (op.id, op.collection.as_str()));
                assert_eq!(got.body(), &encode_op(op)[1..]);
            }
            // The names a session checks against its scope: exactly the ops' collections.
            let named: std::collections::BTreeSet<&str> = batch.collections().collect();
            let used: std::collections::BTreeSet<&str> =
                batch.iter().map(|op| op.collection()).collect();
            assert_eq!(named, used);
        }
        Err(e) => assert!(!canonical, "refused the encoding of its ops: {e}"),
    }
    let Ok(ops) = decoded else {
        return;
    };
    assert_eq!(decode_ops(&encode_ops(&ops)).as_ref(), Ok(&ops));

    // One batch, then the same batch again: the second changes nothing.
    let mut a = common::replica(1);
    let _ = a.apply_encoded(data);
    let once = common::state(&a);
    let _ = a.apply_remote(ops.clone());
    assert_eq!(
        common::state(&a),
        once,
        "applying a batch twice changed the state"
    );

    // The same ops one by one, in reverse order, on another replica: the same state. (Two ops
    // with one id but different contents are a forgery the log cannot arbitrate; keep the
    // first, as a batch does.)
    let mut unique = BTreeMap::new();
    for op in ops {
        unique.entry(op.id).or_insert(op);
    }
    let mut b = common::replica(2);
    for op in unique.into_values().rev() {
        let _ = b.apply_remote([op]);
    }
    assert_eq!(
        common::state(&b),
        once,
        "the order of delivery changed the state"
    );
});
