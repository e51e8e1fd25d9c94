//! Text and list fields through the Replica: transactions, sync, buffering, events, anchors,
//! conversions, deletes and hydration.

mod common;

use common::*;
use crdt_core::{
    Event, InvalidOp, MemoryStorage, Payload, Replica, SeqChange, Side, Storage, Unit, Value,
    VersionVector, WriteError,
};
use hlc::ManualClock;
use rand::SeedableRng;

fn note(r: &mut Mem, key: &str) {
    r.insert("notes", Some(key), [("title", "t".into())])
        .unwrap();
}

fn body(r: &Mem) -> String {
    r.text("notes", "n", "body").unwrap()
}

#[test]
fn concurrent_typing_converges_without_interleaving() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    note(&mut a, "n");
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "[]"))
        .unwrap();
    sync(&a, &mut b);
    for (i, c) in "hello".chars().enumerate() {
        a.transact(|tx| tx.insert_text("notes", "n", "body", 1 + i as u64, &c.to_string()))
            .unwrap();
    }
    for c in "dlrow".chars() {
        // b types backwards: always at the same place.
        b.transact(|tx| tx.insert_text("notes", "n", "body", 1, &c.to_string()))
            .unwrap();
    }
    sync(&a, &mut b);
    sync(&b, &mut a);
    assert_eq!(body(&a), body(&b));
    assert!(
        body(&a) == "[helloworld]" || body(&a) == "[worldhello]",
        "{}",
        body(&a)
    );
}

#[test]
fn a_failed_transaction_undoes_its_text_edits() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    note(&mut r, "n");
    r.transact(|tx| tx.insert_text("notes", "n", "body", 0, "keep this text"))
        .unwrap();
    let stored = r.storage().len().unwrap();
    let err = r
        .transact(|tx| {
            tx.insert_text("notes", "n", "body", 5, "XX")?;
            tx.delete_text("notes", "n", "body", 0, 4)?;
            tx.insert_list("notes", "n", "items", 0, vec![1.into(), 2.into()])?;
            tx.delete("notes", "n")?;
            tx.insert_list("notes", "n", "items", 0, vec!["not an int".into()])
        })
        .unwrap_err();
    assert!(matches!(err, WriteError::NoSuchRecord { .. }), "{err}");
    assert_eq!(body(&r), "keep this text");
    assert_eq!(r.list("notes", "n", "items").unwrap(), Vec::<Value>::new());
    assert_eq!(r.storage().len().unwrap(), stored);
    // Still editable afterwards, and the element ids were not reused.
    r.transact(|tx| tx.insert_text("notes", "n", "body", 14, "!"))
        .unwrap();
    assert_eq!(body(&r), "keep this text!");
}

#[test]
fn a_record_can_be_created_without_field_values() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    a.transact(|tx| {
        tx.insert("notes", Some("n"), [])?;
        tx.insert_text("notes", "n", "body", 0, "only text")
    })
    .unwrap();
    let ops = a.ops_since(&VersionVector::new()).unwrap();
    assert!(matches!(ops[0].payload, Payload::Create));
    sync(&a, &mut b);
    assert_eq!(body(&b), "only text");
    assert!(b.get("notes", "n").unwrap().is_some());
}

#[test]
fn list_values_are_type_checked_and_positions_bounded() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    note(&mut r, "n");
    let err = r
        .transact(|tx| tx.insert_list("notes", "n", "items", 0, vec!["x".into()]))
        .unwrap_err();
    assert!(matches!(&err, WriteError::Invalid(InvalidOp::Type { field, .. }) if field == "items"));
    let err = r
        .transact(|tx| tx.insert_text("notes", "n", "body", 3, "x"))
        .unwrap_err();
    assert!(
        matches!(&err, WriteError::Position { field, .. } if field == "body"),
        "{err}"
    );
    let err = r
        .transact(|tx| tx.insert_text("notes", "n", "title", 0, "x"))
        .unwrap_err();
    assert!(matches!(err, WriteError::Invalid(InvalidOp::Type { .. })));
    r.transact(|tx| {
        tx.insert_list("notes", "n", "items", 0, vec![1.into(), 3.into()])?;
        tx.insert_list("notes", "n", "items", 1, vec![2.into()])?;
        tx.delete_list("notes", "n", "items", 0, 1)
    })
    .unwrap();
    assert_eq!(
        r.list("notes", "n", "items").unwrap(),
        vec![2.into(), 3.into()]
    );
}

#[test]
fn an_edit_waits_for_the_elements_it_depends_on() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    note(&mut a, "n");
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "abc"))
        .unwrap();
    let first = a.ops_since(&VersionVector::new()).unwrap();
    let vv = a.version_vector().clone();
    a.transact(|tx| {
        tx.insert_text("notes", "n", "body", 3, "def")?;
        tx.delete_text("notes", "n", "body", 1, 3)
    })
    .unwrap();
    let later = a.ops_since(&vv).unwrap();
    assert!(matches!(later[0].payload, Payload::SeqInsert { .. }));
    // The later edits arrive first: they wait, unapplied and unstored.
    let out = b.apply_remote(later.clone()).unwrap();
    assert!(out.applied.is_empty(), "{out:?}");
    assert_eq!(out.buffered, 2);
    assert_eq!(b.storage().len().unwrap(), 0);
    let out = b.apply_remote(first).unwrap();
    assert_eq!(out.applied.len(), 4, "{out:?}");
    assert_eq!(b.buffered(), 0);
    assert_eq!(body(&b), body(&a));
    assert_eq!(body(&b), "aef");
}

#[test]
fn watch_events_rebuild_the_text() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    note(&mut a, "n");
    sync(&a, &mut b);
    let watch = b.watch("notes", "n", "body").unwrap();
    let mut mirror: Vec<char> = Vec::new();
    let drain = |r: &mut Mem, mirror: &mut Vec<char>| {
        let text: Vec<char> = r.text("notes", "n", "body").unwrap().chars().collect();
        while let Some(e) = r.poll_event() {
            if let Event::SeqChanged { id, changes } = e {
                assert_eq!(id, watch);
                for change in changes {
                    match change {
                        SeqChange::Insert { pos, len } => {
                            let at = pos as usize;
                            // Take the inserted characters from the current text.
                            let ins = &text[at..at + len as usize];
                            mirror.splice(at..at, ins.iter().copied());
                        }
                        SeqChange::Delete { pos, len } => {
                            mirror.drain(pos as usize..(pos + len) as usize);
                        }
                    }
                }
            }
        }
    };
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "hello world"))
        .unwrap();
    sync(&a, &mut b);
    drain(&mut b, &mut mirror);
    b.transact(|tx| tx.delete_text("notes", "n", "body", 0, 6))
        .unwrap();
    drain(&mut b, &mut mirror);
    a.transact(|tx| tx.insert_text("notes", "n", "body", 11, "!"))
        .unwrap();
    sync(&a, &mut b);
    drain(&mut b, &mut mirror);
    assert_eq!(mirror.iter().collect::<String>(), body(&b));
    assert_eq!(body(&b), "world!");
    assert!(b.unwatch(watch));
}

#[test]
fn anchors_and_unit_conversions_through_the_replica() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    note(&mut a, "n");
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "a😀b"))
        .unwrap();
    sync(&a, &mut b);
    let cursor = b.anchor("notes", "n", "body", 2, Side::Before).unwrap(); // before "b"
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "xy"))
        .unwrap();
    sync(&a, &mut b);
    assert_eq!(
        b.resolve_anchor("notes", "n", "body", cursor).unwrap(),
        Some(4)
    );
    let utf16 = b
        .convert_position("notes", "n", "body", 4, Unit::CodePoint, Unit::Utf16)
        .unwrap();
    assert_eq!(utf16, 5, "the emoji is two UTF-16 units");
    let back = b
        .convert_position("notes", "n", "body", 5, Unit::Utf16, Unit::CodePoint)
        .unwrap();
    assert_eq!(back, 4);
    assert!(b.anchor("notes", "n", "title", 0, Side::Before).is_err());
}

#[test]
fn deleting_a_record_deletes_the_text_it_saw_and_a_later_edit_revives() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    note(&mut a, "n");
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "old"))
        .unwrap();
    sync(&a, &mut b);
    a.transact(|tx| tx.delete("notes", "n")).unwrap();
    clock.advance(1);
    b.transact(|tx| tx.insert_text("notes", "n", "body", 3, " new"))
        .unwrap();
    sync(&a, &mut b);
    sync(&b, &mut a);
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(body(&a), " new");
}

#[test]
fn reopening_keeps_text_and_never_reuses_element_ids() {
    let clock = ManualClock::new(START_MS);
    let mut a = replica(&clock, 1);
    note(&mut a, "n");
    a.transact(|tx| tx.insert_text("notes", "n", "body", 0, "abc"))
        .unwrap();
    let storage: MemoryStorage = a.storage().clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut b = Replica::open(storage, clock.clone(), schema(), &mut rng).unwrap();
    assert_eq!(body(&b), "abc");
    b.transact(|tx| tx.insert_text("notes", "n", "body", 3, "d"))
        .unwrap();
    let ops = b.ops_since(&VersionVector::new()).unwrap();
    let seqs: Vec<u64> = ops
        .iter()
        .filter_map(|op| match op.payload {
            Payload::SeqInsert { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        vec![0, 3],
        "the counter resumed above the stored elements"
    );
    // The two runs are still one run's worth of typing for a peer.
    let mut c = replica(&clock, 3);
    c.apply_remote(ops).unwrap();
    assert_eq!(body(&c), "abcd");
}

#[test]
fn element_numbers_that_would_overflow_are_rejected() {
    use crdt_core::{ElemId, Op, OpId, RejectReason, ReplicaId, SeqContent};
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    note(&mut r, "n");
    let base = r.ops_since(&VersionVector::new()).unwrap()[0].clone();
    let hostile = |n: u64, payload| Op {
        id: OpId::new(
            hlc::Timestamp::new(START_MS - 1, n as u16).unwrap(),
            ReplicaId::new(666),
        ),
        field: "body".into(),
        payload,
        ..base.clone()
    };
    let wrap = u64::MAX - 1;
    let out = r
        .apply_remote([
            hostile(
                1,
                Payload::SeqInsert {
                    seq: wrap,
                    left: None,
                    right: None,
                    content: SeqContent::Text("abc".into()),
                },
            ),
            hostile(
                2,
                Payload::SeqDelete {
                    ranges: vec![(
                        ElemId {
                            replica: ReplicaId::new(1),
                            seq: wrap,
                        },
                        5,
                    )],
                },
            ),
            hostile(
                3,
                Payload::SeqDelete {
                    ranges: vec![(
                        ElemId {
                            replica: ReplicaId::new(1),
                            seq: 0,
                        },
                        0,
                    )],
                },
            ),
        ])
        .unwrap();
    assert_eq!(out.rejected.len(), 3, "{out:?}");
    assert!(
        out.rejected
            .iter()
            .all(|(_, why)| matches!(why, RejectReason::Invalid(InvalidOp::Malformed(_))))
    );
    assert_eq!(body(&r), "");
}
