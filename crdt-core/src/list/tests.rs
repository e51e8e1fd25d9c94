//! Tests of the sequence CRDT: a model check against a `Vec<char>`, convergence of random
//! concurrent histories under random causal delivery, origins respected, no interleaving, and
//! anchors.

use proptest::prelude::*;

use super::position::{Side, Unit};
use super::*;

fn rid(n: u64) -> ReplicaId {
    ReplicaId::new(n)
}

fn text(seq: &Sequence<String>) -> String {
    seq.visible_content().map(String::as_str).collect()
}

fn strip(ranges: Vec<(ElemId, u64, String)>) -> Vec<(ElemId, u64)> {
    ranges.into_iter().map(|(id, n, _)| (id, n)).collect()
}

/// An op as a replica would send it.
#[derive(Clone, Debug)]
enum SeqOp {
    Insert {
        id: ElemId,
        left: Option<ElemId>,
        right: Option<ElemId>,
        content: String,
    },
    Delete(Vec<(ElemId, u64)>),
}

struct Peer {
    id: ReplicaId,
    seq: Sequence<String>,
    next: u64,
    seen: Vec<bool>,
}

impl Peer {
    fn new(id: u64) -> Self {
        Self {
            id: rid(id),
            seq: Sequence::default(),
            next: 0,
            seen: Vec::new(),
        }
    }

    fn insert(&mut self, pos: u64, s: &str) -> SeqOp {
        let id = ElemId {
            replica: self.id,
            seq: self.next,
        };
        let (left, right) = self
            .seq
            .insert_local(pos, s.to_owned(), self.id, self.next)
            .unwrap();
        self.next += s.chars().count() as u64;
        SeqOp::Insert {
            id,
            left,
            right,
            content: s.to_owned(),
        }
    }

    fn ready(&self, op: &SeqOp) -> bool {
        match op {
            SeqOp::Insert { left, right, .. } => [left, right]
                .into_iter()
                .flatten()
                .all(|e| self.seq.contains(*e)),
            SeqOp::Delete(ranges) => ranges
                .iter()
                .all(|(id, n)| self.seq.contains_range(*id, *n)),
        }
    }

    fn apply(&mut self, op: &SeqOp) {
        match op {
            SeqOp::Insert {
                id,
                left,
                right,
                content,
            } => {
                if !self.seq.contains(*id) {
                    self.seq.integrate(*id, *left, *right, content.clone());
                }
            }
            SeqOp::Delete(ranges) => {
                for (id, n) in ranges {
                    self.seq.delete_remote(*id, *n);
                }
            }
        }
    }

    /// Applies every unseen op of `log` that is ready, in `order`, until nothing changes.
    fn catch_up(&mut self, log: &[SeqOp], order: &[usize]) {
        self.seen.resize(log.len(), false);
        loop {
            let mut progress = false;
            for &i in order.iter().filter(|&&i| i < log.len()) {
                if !self.seen[i] && self.ready(&log[i]) {
                    self.apply(&log[i]);
                    self.seen[i] = true;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }
}

#[test]
fn local_edits_match_a_plain_vector() {
    let mut p = Peer::new(1);
    p.insert(0, "hello");
    p.insert(5, " world");
    p.insert(0, ">> ");
    assert_eq!(text(&p.seq), ">> hello world");
    p.seq.delete_local(3, 6).unwrap();
    assert_eq!(text(&p.seq), ">> world");
    p.insert(3, "wide ");
    assert_eq!(text(&p.seq), ">> wide world");
    assert_eq!(p.seq.len(), 13);
    assert!(p.seq.delete_local(10, 5).is_err());
    assert!(p.seq.insert_local(99, "x".into(), p.id, 100).is_err());
}

#[test]
fn typing_forms_one_run() {
    let mut p = Peer::new(1);
    for (i, c) in "keystrokes".chars().enumerate() {
        p.insert(i as u64, &c.to_string());
    }
    assert_eq!(text(&p.seq), "keystrokes");
    let runs = p.seq.tree.runs().count();
    assert_eq!(runs, 1, "consecutive keystrokes are one run");
}

/// Two replicas type at the same place concurrently; the result never interleaves.
fn concurrent_typing(backwards: bool) {
    for (a_id, b_id) in [(1, 2), (2, 1)] {
        let mut base = Peer::new(9);
        let start = base.insert(0, "[]");
        let mut a = Peer::new(a_id);
        let mut b = Peer::new(b_id);
        a.apply(&start);
        b.apply(&start);
        let mut log = vec![start.clone()];
        for (peer, word) in [(&mut a, "abcd"), (&mut b, "wxyz")] {
            let chars: Vec<char> = word.chars().collect();
            for i in 0..chars.len() {
                let (pos, c) = if backwards {
                    (1, chars[chars.len() - 1 - i])
                } else {
                    (1 + i as u64, chars[i])
                };
                log.push(peer.insert(pos, &c.to_string()));
            }
        }
        let order: Vec<usize> = (0..log.len()).collect();
        a.catch_up(&log, &order);
        b.catch_up(&log, &order);
        let (ta, tb) = (text(&a.seq), text(&b.seq));
        assert_eq!(ta, tb);
        assert!(
            ta == "[abcdwxyz]" || ta == "[wxyzabcd]",
            "interleaved ({}): {ta}",
            if backwards { "backwards" } else { "forwards" }
        );
    }
}

#[test]
fn concurrent_forward_typing_does_not_interleave() {
    concurrent_typing(false);
}

#[test]
fn concurrent_backward_typing_does_not_interleave() {
    concurrent_typing(true);
}

#[test]
fn positions_convert_between_units() {
    let mut p = Peer::new(1);
    p.insert(0, "a😀é中b");
    let s = &p.seq;
    // code points: a=0 😀=1 é=2 中=3 b=4; UTF-16: a0 😀1-2 é3 中4 b5; UTF-8: a0 😀1-4 é5-6 中7-9 b10
    assert_eq!(s.convert(2, Unit::CodePoint, Unit::Utf16), 3);
    assert_eq!(s.convert(4, Unit::CodePoint, Unit::Utf8), 10);
    assert_eq!(s.convert(3, Unit::Utf16, Unit::CodePoint), 2);
    assert_eq!(
        s.convert(2, Unit::Utf16, Unit::CodePoint),
        1,
        "inside a pair rounds down"
    );
    assert_eq!(s.convert(7, Unit::Utf8, Unit::Utf16), 4);
    assert_eq!(
        s.convert(99, Unit::Utf8, Unit::CodePoint),
        5,
        "clamps to the end"
    );
}

#[test]
fn anchors_keep_their_place_under_remote_edits() {
    let mut a = Peer::new(1);
    let mut b = Peer::new(2);
    let mut log = vec![a.insert(0, "hello world")];
    b.catch_up(&log, &[0]);
    let cursor = b.seq.anchor(6, Side::Before); // before "world"
    let end = b.seq.anchor(11, Side::After); // after "d"
    log.push(a.insert(0, ">> "));
    let del = SeqOp::Delete(strip(a.seq.delete_local(3, 6).unwrap())); // delete "hello "
    log.push(del);
    b.catch_up(&log, &[0, 1, 2]);
    assert_eq!(text(&b.seq), ">> world");
    assert_eq!(b.seq.resolve(cursor), Some(3));
    assert_eq!(b.seq.resolve(end), Some(8));
    let start = b.seq.anchor(0, Side::After);
    assert_eq!(b.seq.resolve(start), Some(0));
}

/// What a transaction's journal records for each local edit.
enum Undo {
    Inserted(ElemId, u64),
    Deleted(Vec<(ElemId, u64, String)>),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Undoing local edits in reverse order restores the elements, content and counts, and
    /// every element can still be found.
    #[test]
    fn undo_restores_the_sequence(
        setup in prop::collection::vec((any::<u64>(), "[a-z😀]{1,5}"), 1..20),
        edits in prop::collection::vec((any::<bool>(), any::<u64>(), 1u64..6, "[a-z😀]{1,5}"), 1..30),
    ) {
        let mut p = Peer::new(1);
        for (at, s) in setup {
            let pos = at % (p.seq.len() + 1);
            p.insert(pos, &s);
        }
        let _ = p.seq.delete_local(0, 1.min(p.seq.len()));
        let before_text = text(&p.seq);
        let before = p.seq.clone();
        let mut journal = Vec::new();
        for (insert, at, n, s) in edits {
            if insert || p.seq.len() == 0 {
                let pos = at % (p.seq.len() + 1);
                let id = ElemId { replica: p.id, seq: p.next };
                p.insert(pos, &s);
                journal.push(Undo::Inserted(id, s.chars().count() as u64));
            } else {
                let pos = at % p.seq.len();
                let n = n.min(p.seq.len() - pos);
                journal.push(Undo::Deleted(p.seq.delete_local(pos, n).unwrap()));
            }
        }
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Inserted(id, n) => p.seq.unplace(id, n),
                Undo::Deleted(ranges) => {
                    for (id, n, content) in ranges.into_iter().rev() {
                        p.seq.undelete(id, n, content);
                    }
                }
            }
        }
        p.seq.check();
        prop_assert_eq!(text(&p.seq), before_text);
        prop_assert!(p.seq == before);
        prop_assert_eq!(p.seq.counts(), before.counts());
        for (id, _) in before.elements() {
            prop_assert!(p.seq.contains(id));
        }
    }
}

/// A history: a seed, steps `(replica, action, position, length, text)`, a delivery order.
type History = (u64, Vec<(usize, u8, u64, u64, String)>, Vec<usize>);

fn arb_history() -> impl Strategy<Value = History> {
    (
        any::<u64>(),
        prop::collection::vec(
            (0usize..4, 0u8..10, any::<u64>(), 1u64..4, "[a-c😀]{1,3}"),
            1..60,
        ),
        prop::collection::vec(0usize..1000, 0..200),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Local edits agree with a plain vector of chars, and the cached counts agree with the
    /// content.
    #[test]
    fn local_edits_agree_with_a_model(edits in prop::collection::vec((any::<bool>(), any::<u64>(), 1u64..5, "[a-z😀é]{1,6}"), 1..200)) {
        let mut p = Peer::new(1);
        let mut model: Vec<char> = Vec::new();
        for (insert, at, n, s) in edits {
            if insert || model.is_empty() {
                let pos = at % (model.len() as u64 + 1);
                p.insert(pos, &s);
                let at = pos as usize;
                model.splice(at..at, s.chars());
            } else {
                let pos = at % model.len() as u64;
                let n = n.min(model.len() as u64 - pos);
                p.seq.delete_local(pos, n).unwrap();
                model.drain(pos as usize..(pos + n) as usize);
            }
            let expected: String = model.iter().collect();
            prop_assert_eq!(text(&p.seq), expected.clone());
            prop_assert_eq!(p.seq.len(), model.len() as u64);
            let utf16: u64 = expected.encode_utf16().count() as u64;
            prop_assert_eq!(p.seq.convert(p.seq.len(), Unit::CodePoint, Unit::Utf16), utf16);
            prop_assert_eq!(p.seq.counts().utf16, utf16);
            prop_assert_eq!(p.seq.counts().utf8, expected.len() as u64);
        }
        p.seq.check();
    }

    /// Random concurrent edits on 2-4 replicas, delivered in random causal orders, converge;
    /// and each insert lands between its origins.
    #[test]
    fn concurrent_histories_converge((seed, steps, order) in arb_history()) {
        let n = 2 + (seed % 3) as usize;
        let mut peers: Vec<Peer> = (0..n).map(|i| Peer::new(i as u64 + 1)).collect();
        let mut log: Vec<SeqOp> = Vec::new();
        for (who, action, at, len, s) in steps {
            let who = who % n;
            let order: Vec<usize> = (0..log.len()).collect();
            let p = &mut peers[who];
            match action {
                // Sometimes catch up on others' ops first.
                0..=2 => p.catch_up(&log, &order),
                3..=7 => {
                    let pos = at % (p.seq.len() + 1);
                    let op = p.insert(pos, &s);
                    p.seen.resize(log.len() + 1, false);
                    p.seen[log.len()] = true;
                    log.push(op);
                }
                _ if p.seq.len() > 0 => {
                    let pos = at % p.seq.len();
                    let len = len.min(p.seq.len() - pos);
                    let ranges = strip(p.seq.delete_local(pos, len).unwrap());
                    p.seen.resize(log.len() + 1, false);
                    p.seen[log.len()] = true;
                    log.push(SeqOp::Delete(ranges));
                }
                _ => {}
            }
        }
        // Deliver everything, each peer in its own random order.
        let mut all: Vec<usize> = order.iter().map(|i| i % log.len().max(1)).collect();
        all.extend(0..log.len());
        for (k, p) in peers.iter_mut().enumerate() {
            let mut mine = all.clone();
            let shift = k * 7 % mine.len().max(1);
            mine.rotate_left(shift);
            p.catch_up(&log, &mine);
        }
        let expected = text(&peers[0].seq);
        for p in &peers {
            p.seq.check();
            prop_assert_eq!(text(&p.seq), expected.clone());
            prop_assert!(p.seq == peers[0].seq, "element order differs");
        }
        // Every element sits between its origins.
        let seq = &peers[0].seq;
        for op in &log {
            if let SeqOp::Insert { id, left, right, .. } = op {
                let at = seq.index_of(seq.to_ref(*id).unwrap()).unwrap();
                if let Some(l) = left {
                    prop_assert!(seq.index_of(seq.to_ref(*l).unwrap()).unwrap() < at);
                }
                if let Some(r) = right {
                    prop_assert!(seq.index_of(seq.to_ref(*r).unwrap()).unwrap() > at);
                }
            }
        }
    }
}
