//! Bytes from a hostile or broken peer: mutated real messages never panic, and hand-written
//! messages (range entries, want lists, sketch requests, frontiers, oversized counts) are
//! refused with the right error or answered with exactly what they may ask for.

mod harness;

use std::collections::BTreeMap;

use crdt_core::{Op, OpId};
use harness::{Faults, Net, Node, Rng, op, ops, session_pair};
use merkle_sync::{Config, Index, Reconcile, Scope, Session, SessionError};

#[test]
fn hostile_bytes_never_panic() {
    let log: BTreeMap<OpId, Op> = ops(0..50).into_iter().map(|o| (o.id, o)).collect();
    let index = Index::from_ops(log.values());
    let other = Index::from_ops(log.values().take(20));
    let scope = Scope::new(["a"]);
    // Collect real messages of a session as seeds for mutation.
    let mut net = Net::new(
        vec![
            Node::new(log.values().cloned()),
            Node::new(log.values().take(20).cloned()),
        ],
        &scope,
        &Config::default(),
        Faults::NONE,
        1,
    );
    net.keep_wire = true;
    net.run(10_000).unwrap();
    let mut corpus = net.wire.clone();
    // And the messages of a descent, whose range entries then get mutated too.
    let mut descent = Config::default();
    descent.reconcile = Reconcile::Descent;
    let mut net = Net::new(
        vec![
            Node::new(log.values().step_by(2).cloned()),
            Node::new(log.values().take(20).cloned()),
        ],
        &scope,
        &descent,
        Faults::NONE,
        1,
    );
    net.keep_wire = true;
    net.run(10_000).unwrap();
    assert!(net.wire.iter().any(|m| m[0] == 7));
    corpus.extend(net.wire.clone());
    corpus.push(vec![]);
    corpus.push(vec![
        3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ]);
    corpus.push(vec![5, 0xff, 0xff, 0xff, 0x0f]);
    let mut rng = Rng(99);
    for round in 0..3000u64 {
        let mut bytes = corpus[(round as usize) % corpus.len()].clone();
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            2 => bytes.extend((0..rng.below(40)).map(|_| rng.next_u64() as u8)),
            _ => bytes = (0..rng.below(80)).map(|_| rng.next_u64() as u8).collect(),
        }
        for idx in [&index, &other] {
            let (mut s, _) = session_pair(idx, idx, &scope);
            let _ = s.handle_message(1, &bytes, idx);
            let _ = s.handle_timeout(5_000, idx);
            while let Ok(Some(_)) = s.poll_transmit(5_000, idx, &log) {}
        }
    }
}

/// Every op a session sends while draining `poll_transmit`.
fn drain(s: &mut Session, index: &Index, log: &BTreeMap<OpId, Op>) -> u64 {
    let before = s.stats().ops_sent;
    while s.poll_transmit(10, index, log).unwrap().is_some() {}
    s.stats().ops_sent - before
}

#[test]
fn a_range_split_at_the_last_bit_names_one_key() {
    // A split at bit 128 is well formed: the range under it is one key. The peer holds
    // nothing there, so everything we hold in the collection is pushed (a shift by 128 once
    // panicked here in debug builds and pushed only the ids below the key in release).
    let log: BTreeMap<OpId, Op> = ops(0..50).into_iter().map(|o| (o.id, o)).collect();
    let index = Index::from_ops(log.values());
    let key = log.keys().nth(25).unwrap().to_bytes();
    let mut msg = vec![7, 1, 0, 0, 128, 0];
    msg.extend(key);
    msg.push(0); // one child: no ids
    let (mut s, _) = session_pair(&index, &index, &Scope::new(["a"]));
    drain(&mut s, &index, &log);
    s.handle_message(1, &msg, &index).unwrap();
    assert_eq!(drain(&mut s, &index, &log), 50);
}

#[test]
fn a_want_list_is_answered_with_the_held_ops_alone() {
    // A Want written by hand in its wire layout (docs/wire-format.md): two held ids, of two
    // replicas, and one the log lacks, as a decode misled by a false peel could ask for.
    // The held ops are sent, the stranger is ignored, and the session goes on.
    let log: BTreeMap<OpId, Op> = ops(0..50).into_iter().map(|o| (o.id, o)).collect();
    let index = Index::from_ops(log.values());
    let held = vec![ops(12..13)[0].id, ops(20..21)[0].id];
    assert_ne!(held[0].replica, held[1].replica);
    let stranger = op("a", 1_030, 7, 40).id;
    assert!(!log.contains_key(&stranger));
    let mut ids = held.clone();
    ids.push(stranger);
    ids.sort();
    let mut replicas: Vec<u64> = ids.iter().map(|id| id.replica.as_u64()).collect();
    replicas.sort();
    replicas.dedup();
    let varint = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    let mut msg = vec![5];
    varint(&mut msg, ids.len() as u64);
    varint(&mut msg, replicas.len() as u64);
    for r in &replicas {
        msg.extend(r.to_be_bytes());
    }
    let mut ms = 0;
    for id in &ids {
        varint(&mut msg, id.ts.millis() - ms);
        varint(&mut msg, u64::from(id.ts.logical()));
        let at = replicas.binary_search(&id.replica.as_u64()).unwrap();
        varint(&mut msg, at as u64);
        ms = id.ts.millis();
    }
    let (mut s, _) = session_pair(&index, &index, &Scope::new(["a"]));
    drain(&mut s, &index, &log);
    s.handle_message(1, &msg, &index).unwrap();
    let mut sent = Vec::new();
    while let Some(m) = s.poll_transmit(2, &index, &log).unwrap() {
        if m[0] == 6 {
            let ops = crdt_core::codec::decode_ops(&m[1..]).unwrap();
            sent.extend(ops.iter().map(|o| o.id));
        }
    }
    assert_eq!(sent, held);
    // The last id turned into one below the id before it (1020/0@1 after 1020/0@3) is
    // refused: a want list is sorted.
    let mut swapped = msg.clone();
    let tail = swapped.len() - 3;
    swapped[tail..].copy_from_slice(&[0, 0, 0]);
    assert!(matches!(
        s.handle_message(3, &swapped, &index),
        Err(SessionError::Message(merkle_sync::MessageError::BadWant(
            "ids out of order"
        )))
    ));
}

#[test]
fn asking_for_a_sketch_again_and_again_ends_the_session() {
    // Both logs cover the same frontier; a has more ops, so it sends the sketch (id 1). A
    // peer that keeps asking for its symbols gets them up to a few times the budget, then
    // the session ends: the work a peer can make us do per sketch is bounded.
    let all = ops(0..400);
    let a: BTreeMap<OpId, Op> = all.iter().map(|o| (o.id, o.clone())).collect();
    // Every other op, and the last of each replica, so that the frontiers are equal.
    let b: Vec<Op> = all.iter().step_by(2).chain(&all[397..]).cloned().collect();
    let (ia, ib) = (Index::from_ops(a.values()), Index::from_ops(&b));
    let mut config = Config::default();
    config.max_sketch_symbols = 256;
    let scope = Scope::new(["a"]);
    let mut sa = Session::new(0, scope.clone(), config.clone(), &ia);
    let mut sb = Session::new(0, scope, config, &ib);
    let b_log: BTreeMap<OpId, Op> = b.iter().map(|o| (o.id, o.clone())).collect();
    let hello = sb.poll_transmit(0, &ib, &b_log).unwrap().unwrap();
    drain(&mut sa, &ia, &a);
    sa.handle_message(1, &hello, &ia).unwrap();
    let mut sketch_messages = 0;
    while let Some(m) = sa.poll_transmit(1, &ia, &a).unwrap() {
        sketch_messages += usize::from(m[0] == 3);
    }
    assert!(sketch_messages > 0, "a sends a sketch");
    let more = [4u8, 1, 0, 0x80, 0x02]; // More { id: 1, start: 0, len: 256 }
    let mut answered = 0;
    let err = loop {
        match sa.handle_message(2, &more, &ia) {
            Ok(()) => answered += 1,
            Err(e) => break e,
        }
        while sa.poll_transmit(2, &ia, &a).unwrap().is_some() {}
        assert!(answered < 100, "still answering");
    };
    assert!(matches!(err, SessionError::SketchFailed), "{err:?}");
    assert!(
        answered >= 2,
        "a lost chunk or two is asked for again: {answered}"
    );
}

#[test]
fn oversized_and_overcounted_messages_are_refused_before_allocating() {
    let index = Index::new();
    let scope = Scope::new(["a"]);
    let (mut s, _) = session_pair(&index, &index, &scope);
    let huge = vec![5u8; merkle_sync::MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        s.handle_message(0, &huge, &index),
        Err(SessionError::Message(merkle_sync::MessageError::TooLarge(
            _
        )))
    ));
    // Only an ops frame of one op may pass 8 MiB, and only up to 64 MiB + 1.
    let frame = |count: u8, len: usize| {
        let mut f = vec![6u8, crdt_core::codec::FORMAT_VERSION, count];
        f.resize(len, 0);
        f
    };
    for f in [
        frame(2, merkle_sync::MAX_MESSAGE_BYTES + 1),
        frame(1, merkle_sync::MAX_OPS_FRAME_BYTES + 1),
    ] {
        let (mut s, _) = session_pair(&index, &index, &scope);
        assert!(matches!(
            s.handle_message(0, &f, &index),
            Err(SessionError::Message(merkle_sync::MessageError::TooLarge(
                _
            )))
        ));
    }
    let (mut s, _) = session_pair(&index, &index, &scope);
    // Want claiming 2^40 ids in 6 bytes.
    let want = [5u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    assert!(matches!(
        s.handle_message(0, &want, &index),
        Err(SessionError::Message(
            merkle_sync::MessageError::TooMany { .. }
        ))
    ));
}

#[test]
fn hostile_range_entries_end_the_session() {
    let log: BTreeMap<OpId, Op> = ops(0..50).into_iter().map(|o| (o.id, o)).collect();
    let index = Index::from_ops(log.values());
    let scope = Scope::new(["a"]);
    let bad_range = |bytes: &[u8]| {
        let (mut s, _) = session_pair(&index, &index, &scope);
        match s.handle_message(1, bytes, &index) {
            Err(SessionError::Message(e)) => e,
            other => panic!("{bytes:?}: {other:?}"),
        }
    };
    use merkle_sync::MessageError as E;
    // A collection outside the scope (index 1 of a one-collection scope).
    assert!(matches!(bad_range(&[7, 1, 1, 0, 0, 0, 0]), E::BadRange(_)));
    // bits past the split; split + width past 128; width past 8.
    assert!(matches!(
        bad_range(&[7, 1, 0, 9, 8, 0, 0xff, 0]),
        E::BadRange(_)
    ));
    assert!(matches!(
        bad_range(&[7, 1, 0, 0, 125, 4, 0, 0]),
        E::BadRange(_)
    ));
    assert!(matches!(
        bad_range(&[7, 1, 0, 0, 0, 9, 0, 0]),
        E::BadRange(_)
    ));
    // Prefix bits set past the split.
    assert!(matches!(
        bad_range(&[7, 1, 0, 0, 4, 0, 0x0f, 0]),
        E::BadRange(_)
    ));
    // An id listed under a child it does not belong to (child 0 of a split at bit 0 holds
    // ids whose first bit is 0).
    let mut m = vec![7, 1, 0, 0, 0, 1, 1];
    m.extend([0xff; 16]);
    m.push(0);
    assert!(matches!(bad_range(&m), E::BadRange(_)));
    // 256 children claimed with three bytes left, and 2^40 entries in a few bytes: refused
    // before allocating.
    assert!(matches!(
        bad_range(&[7, 1, 0, 0, 0, 8, 0, 0, 0]),
        E::TooMany { .. }
    ));
    assert!(matches!(
        bad_range(&[7, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 0, 0, 0, 0]),
        E::TooMany { .. }
    ));
    // A well-formed entry saying "I hold nothing" gets the whole collection pushed.
    let (mut s, _) = session_pair(&index, &index, &scope);
    s.handle_message(1, &[7, 1, 0, 0, 0, 0, 0], &index).unwrap();
    let mut pushed = 0;
    while let Some(m) = s.poll_transmit(1, &index, &log).unwrap() {
        if m[0] == 6 {
            pushed += crdt_core::codec::decode_ops(&m[1..]).unwrap().len();
        }
    }
    assert_eq!(pushed, 50);
}

#[test]
fn a_frontier_out_of_order_is_refused() {
    let index = Index::new();
    let scope = Scope::new(["a"]);
    let (mut s, mut peer) = session_pair(&index, &index, &scope);
    let mut hello = peer
        .poll_transmit(0, &index, &BTreeMap::new())
        .unwrap()
        .unwrap();
    // The empty frontier is the last byte of this Hello: replace it by replicas 2 then 1.
    assert_eq!(hello.pop(), Some(0));
    hello.push(2);
    for replica in [2u64, 1] {
        hello.extend(replica.to_be_bytes());
        hello.extend(hlc::Timestamp::new(10, 0).unwrap().to_bytes());
    }
    assert!(matches!(
        s.handle_message(0, &hello, &index),
        Err(SessionError::Message(
            merkle_sync::MessageError::UnsortedFrontier
        ))
    ));
}

#[test]
fn an_op_in_a_second_encoding_is_refused_and_nothing_is_handed_out() {
    let index = Index::new();
    let scope = Scope::new(["a"]);
    let ops = [op("a", 10, 1, 8), op("a", 11, 2, 8)];
    let mut frame = vec![6u8];
    frame.extend(crdt_core::codec::encode_ops(&ops));
    // The honest frame is taken and its ops handed out as sent.
    let (mut s, _) = session_pair(&index, &index, &scope);
    s.handle_message(0, &frame, &index).unwrap();
    let got = s.poll_event();
    assert!(
        matches!(&got, Some(merkle_sync::Event::Ops(b)) if b.as_bytes() == &frame[1..]),
        "{got:?}"
    );
    // The second op's schema version (1, one byte after its 16-byte id) written in two
    // bytes: postcard reads the same ops, but their digests would not be the ones the sender
    // holds.
    let second = 3 + crdt_core::codec::encode_op(&ops[0]).len() - 1;
    let at = second + 16;
    assert_eq!(frame[at], 1);
    let mut long = frame.clone();
    long[at] = 0x81;
    long.insert(at + 1, 0);
    assert_eq!(
        crdt_core::codec::decode_ops(&long[1..]).unwrap(),
        ops.to_vec()
    );
    let (mut s, _) = session_pair(&index, &index, &scope);
    let err = s.handle_message(0, &long, &index).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Message(merkle_sync::MessageError::Ops(
                crdt_core::codec::DecodeError::NotCanonical(n)
            )) if n == at - 1
        ),
        "{err}"
    );
    assert_eq!(s.poll_event(), None);
}
