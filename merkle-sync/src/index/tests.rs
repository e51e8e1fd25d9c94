//! The index's unit tests: batches against single inserts, sketch caches, indexing from a
//! log, and ids given in two collections.

use super::*;
use crdt_core::{Payload, Value};

fn op(collection: &str, ms: u64, replica: u64) -> Op {
    Op {
        id: OpId::new(
            Timestamp::new(ms, 0).expect("in range"),
            ReplicaId::new(replica),
        ),
        schema_version: 1,
        collection: collection.into(),
        key: format!("k{ms}"),
        field: "f".into(),
        deps: vec![],
        payload: Payload::Write(Value::Int(ms as i64)),
    }
}

#[test]
fn sketches_past_the_cache_match_a_fresh_sketch_in_few_walks() {
    // Two collections of different sizes (caches of 1024 and 64 symbols), a cut that
    // leaves some ops of each above it, and requests that cross the cache's end, then
    // creep past it one symbol at a time, as a hostile peer's chunks would.
    let ops: Vec<Op> = (0..10_000u64)
        .map(|i| op(if i % 10 == 0 { "b" } else { "a" }, 10 + i, 1 + i % 3))
        .collect();
    let index = Index::from_ops(&ops);
    let scope = Scope::new(["a", "b"]);
    let mut cut = VersionVector::new();
    for r in 1..=3 {
        cut.observe(OpId::new(
            Timestamp::new(9_500, 0).unwrap(),
            ReplicaId::new(r),
        ));
    }
    let covered: Vec<Key> = ops
        .iter()
        .filter(|o| cut.covers(o.id))
        .map(|o| o.id.to_bytes())
        .collect();
    assert!(covered.len() < ops.len() && covered.len() > 9_000);
    let fresh = |start: u64, len: usize| {
        let mut out = vec![Symbol::default(); len];
        for k in &covered {
            sketch::add_item(&mut out, start, k, 1);
        }
        out
    };
    let mut local = index.local_sketch(&scope, &cut);
    assert_eq!(index.collections["a"].cached_sketch().len(), 1024);
    assert_eq!(index.collections["b"].cached_sketch().len(), 64);
    for (start, len) in [(0, 100), (1000, 100), (100, 3000)] {
        let got = index.sketch(&scope, &mut local, start, len, 1 << 20);
        assert_eq!(got, fresh(start, len), "{start}+{len}");
    }
    let walks = local.walks;
    for start in 3100..3400 {
        let got = index.sketch(&scope, &mut local, start, 1, 1 << 20);
        assert_eq!(got, fresh(start, 1), "{start}");
    }
    // The tail starts at the shorter cache ("b": 64) and each request past its end at
    // least doubled that end: three walks for three requests (to 128, 1100 and 3100),
    // then 300 one-symbol requests cost one walk (to 6200), not 300.
    assert_eq!(local.floor, 64);
    assert_eq!(walks, 3);
    assert_eq!(local.walks, walks + 1);
    // Never past the budget, unless a request itself goes further.
    let mut local = index.local_sketch(&scope, &cut);
    let got = index.sketch(&scope, &mut local, 5000, 10, 5010);
    assert_eq!(got, fresh(5000, 10));
    assert_eq!(local.tail.len(), 5010 - 64);
}

#[test]
fn a_sketch_keeps_at_most_its_budget_whatever_the_collections() {
    // A peer asking for the last symbol of the budget, over 40 small collections: one
    // tail of the scope's sum, not one per collection.
    let names: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    let ops: Vec<Op> = (0..400u64)
        .map(|i| op(&names[(i % 40) as usize], 10 + i, 1))
        .collect();
    let index = Index::from_ops(&ops);
    let scope = Scope::new(names.iter().map(String::as_str));
    let mut local = index.local_sketch(&scope, &index.frontier(&scope));
    let budget = 1 << 16;
    let got = index.sketch(&scope, &mut local, budget - 1, 1, budget);
    let mut want = vec![Symbol::default(); 1];
    for o in &ops {
        sketch::add_item(&mut want, budget - 1, &o.id.to_bytes(), 1);
    }
    assert_eq!(got, want);
    assert_eq!(local.tail.len() as u64, budget - local.floor);
    assert_eq!(local.walks, 1);
}

#[test]
fn indexing_from_the_log_matches_indexing_the_ops() {
    use crdt_core::{MemoryStorage, Storage};
    // Three collections, interleaved; ids given out of order, with repeats, to an index
    // that already holds some of them.
    let ops: Vec<Op> = (0..3000u64)
        .map(|i| op(["a", "b", "c"][(i * 7 % 3) as usize], 10 + i, 1 + i % 4))
        .collect();
    let mut store = MemoryStorage::new();
    store.append(&ops).unwrap();
    let log: BTreeMap<OpId, Op> = ops.iter().map(|o| (o.id, o.clone())).collect();
    let scope = Scope::new(["a", "b", "c"]);
    let mut ids: Vec<OpId> = ops.iter().map(|o| o.id).rev().collect();
    ids.extend(ops[100..200].iter().map(|o| o.id));
    let want = Index::from_ops(&ops);
    for from_store in [true, false] {
        // Built caches, at a target (64: 1,000 ops a collection at the end) that the batch
        // keeps, so that `insert_from` must bring them up to date in place, although the
        // batch also names ids the index holds.
        let mut index = Index::from_ops(&ops[..700]);
        index.warm_sketches();
        let added = if from_store {
            index
                .insert_from(&crate::StorageSource(&store), &ids)
                .unwrap()
        } else {
            index.insert_from(&log, &ids).unwrap()
        };
        assert_eq!(added, 2300);
        assert_eq!(index.len(), 3000);
        assert_eq!(index.root(&scope), want.root(&scope));
        assert_eq!(index.frontier(&scope), want.frontier(&scope));
        for name in ["a", "b", "c"] {
            assert_eq!(
                index.collections[name].sketch.get().map(Vec::as_slice),
                Some(want.collections[name].cached_sketch())
            );
        }
        assert_eq!(index.check_sketch_caches(), Ok(()));
    }
    // An id the log lacks: an error naming it, and nothing indexed.
    let stranger = op("a", 99_999, 1);
    let mut index = Index::from_ops(&ops[..10]);
    let err = index
        .insert_from(&crate::StorageSource(&store), &[ops[20].id, stranger.id])
        .unwrap_err();
    assert_eq!(err.id, stranger.id);
    assert_eq!(index.len(), 10);
    assert_eq!(index.root(&scope), Index::from_ops(&ops[..10]).root(&scope));
}

/// A log that lends, for one id, the bytes of another op.
struct Mixed<'a>(&'a BTreeMap<OpId, Op>, OpId, OpId);

impl crate::OpSource for Mixed<'_> {
    fn op(&self, id: OpId) -> Result<Option<Op>, SourceError> {
        self.0.op(if id == self.1 { self.2 } else { id })
    }
}

#[test]
fn indexing_from_a_log_that_lends_the_wrong_bytes_is_an_error() {
    let ops: Vec<Op> = (0..50u64).map(|i| op("a", 10 + i, 1)).collect();
    let log: BTreeMap<OpId, Op> = ops.iter().map(|o| (o.id, o.clone())).collect();
    let mut index = Index::new();
    let ids: Vec<OpId> = ops.iter().map(|o| o.id).collect();
    let err = index
        .insert_from(&Mixed(&log, ops[7].id, ops[8].id), &ids)
        .unwrap_err();
    assert_eq!(err.id, ops[7].id);
    assert!(err.to_string().contains(&ops[8].id.to_string()), "{err}");
    assert!(index.is_empty());
}

#[test]
fn batches_index_like_single_inserts() {
    // Enough ops for the cached sketch to grow (dropped, then rebuilt) inside a batch.
    // The caches are asked for all along, so that between growths inserts keep them up
    // to date in place; at the end they must be what a fresh build gives.
    let ops: Vec<Op> = (0..5000u64)
        .map(|i| {
            op(
                ["a", "b"][(i % 3 == 0) as usize],
                10 + i * 7919 % 5000,
                i % 4,
            )
        })
        .collect();
    let scope = Scope::new(["a", "b"]);
    let mut one = Index::new();
    for (i, op) in ops.iter().enumerate() {
        assert!(one.insert_op(op));
        if i % 97 == 0 {
            one.warm_sketches();
        }
    }
    let mut batched = Index::from_ops(&ops[..700]);
    batched.warm_sketches();
    for chunk in ops[300..].chunks(613) {
        batched.insert_ops(chunk);
        batched.warm_sketches();
    }
    assert_eq!(batched.insert_ops(&ops[..10]), 0);
    // From the bytes a peer sends, in large batches.
    let mut encoded = Index::from_ops(&ops[..700]);
    encoded.warm_sketches();
    let mut added = 0;
    for chunk in ops[300..].chunks(1500) {
        let batch = EncodedOps::from_ops(chunk).unwrap();
        added += encoded.insert_encoded(&batch);
        encoded.warm_sketches();
    }
    assert_eq!(added, 4300);
    let batch = EncodedOps::from_ops(&ops[..10]).unwrap();
    assert_eq!(encoded.insert_encoded(&batch), 0);
    let fresh = Index::from_ops(&ops);
    for index in [&batched, &one, &encoded] {
        assert_eq!(index.len(), 5000);
        assert_eq!(index.root(&scope), fresh.root(&scope));
        assert_eq!(index.frontier(&scope), fresh.frontier(&scope));
        for name in ["a", "b"] {
            let (c, f) = (&index.collections[name], &fresh.collections[name]);
            assert_eq!(c.sketch.get().map(Vec::as_slice), Some(f.cached_sketch()));
            assert!(
                c.sketch.get().is_some_and(|s| s.len() > 64),
                "the sketch grew"
            );
        }
    }
}

#[test]
fn a_batch_moves_the_frontier_as_each_id_would() {
    // Few replicas and many, sharing cache slots (1 and 9, 2 and 10, ...), in id order.
    for seed in 0..200u64 {
        let mut next = crate::test_rng::draws(seed);
        let replicas = 1 + next(40);
        let mut ids: Vec<OpId> = (0..next(300))
            .map(|_| {
                let ts = Timestamp::new(1_000 + next(500), 0).expect("in range");
                OpId::new(ts, ReplicaId::new(1 + next(replicas)))
            })
            .collect();
        ids.sort();
        ids.dedup();
        let mut start = VersionVector::new();
        start.observe(OpId::new(
            Timestamp::new(1_250, 0).expect("in range"),
            ReplicaId::new(1),
        ));
        let (mut each, mut batched) = (start.clone(), start);
        for id in &ids {
            each.observe(*id);
        }
        let keys: Vec<Key> = ids.iter().map(|id| id.to_bytes()).collect();
        observe_all(&mut batched, &keys);
        assert_eq!(batched, each, "seed {seed}");
    }
}

#[test]
fn ops_of_every_size_index_from_their_bytes_as_from_the_ops() {
    // Values from empty to past a 1 KiB chunk, so that the leaves fall in every block count
    // of the wide hasher, in its fallbacks, and in groups too small to go wide; each op's
    // bytes sit between others' in the batch, as a peer sends them.
    let ops: Vec<Op> = (0..1500u64)
        .map(|i| {
            let mut o = op(if i % 3 == 0 { "a" } else { "b" }, 1_000 + i, 1 + i % 4);
            let len = (i * 37 % 1100) as usize;
            o.payload = Payload::Write(Value::Bytes(vec![(i % 251) as u8; len]));
            o
        })
        .collect();
    let scope = Scope::new(["a", "b"]);
    for size in [1, 7, 300, 1500] {
        let mut encoded = Index::new();
        for chunk in ops.chunks(size) {
            encoded.insert_encoded(&EncodedOps::from_ops(chunk).unwrap());
        }
        let fresh = Index::from_ops(&ops);
        assert_eq!(
            encoded.root(&scope),
            fresh.root(&scope),
            "batches of {size}"
        );
        for name in ["a", "b"] {
            let (c, f) = (&encoded.collections[name], &fresh.collections[name]);
            let mut leaves = Vec::new();
            c.trie.for_each_from(&[0; 16], |k, d| {
                leaves.push((*k, *d));
                true
            });
            let mut want = Vec::new();
            f.trie.for_each_from(&[0; 16], |k, d| {
                want.push((*k, *d));
                true
            });
            assert_eq!(leaves, want, "leaf digests of {name}, batches of {size}");
        }
    }
    // And each leaf is the op's digest.
    let one = Index::from_ops(&ops[..1]);
    let d = op_digest(&ops[0]);
    let mut got = None;
    one.collections["a"].trie.for_each_from(&[0; 16], |_, h| {
        got = Some(*h);
        false
    });
    assert_eq!(got, Some(d.0));
}

#[test]
fn an_id_in_a_second_collection_is_not_indexed_again() {
    use crdt_core::{MemoryStorage, Storage};
    let scope = Scope::new(["a", "b"]);
    let ops: Vec<Op> = (0..40u64).map(|i| op("a", 10 + i, 1)).collect();
    // The same ids in "b": a peer that forged them, in the batch and after it.
    let forged = |o: &Op| Op {
        collection: "b".into(),
        ..o.clone()
    };
    let mut batch = ops[..20].to_vec();
    batch.insert(5, forged(&ops[30]));
    batch.push(forged(&ops[3]));
    batch.extend(ops[20..].iter().cloned());
    let later: Vec<Op> = ops.iter().step_by(7).map(forged).collect();
    let mut store = MemoryStorage::new();
    let mut encoded = Index::new();
    let mut decoded = Index::new();
    let mut single = Index::new();
    for b in [&batch, &later] {
        store.append(b).unwrap();
        encoded.insert_encoded(&EncodedOps::from_ops(b).unwrap());
        decoded.insert_ops(b);
        for o in b.iter() {
            single.insert_op(o);
        }
    }
    // The store kept the first op of each id; every index must hold just those.
    let kept: Vec<Op> = store.scan().map(Result::unwrap).collect();
    assert_eq!(kept.len(), 40);
    let fresh = Index::from_ops(&kept);
    for index in [&encoded, &decoded, &single] {
        assert_eq!(index.len(), 40);
        assert_eq!(index.root(&scope), fresh.root(&scope));
        assert!(
            index.contains("b", ops[30].id),
            "the first copy of 30 is in b"
        );
        assert!(!index.contains("a", ops[30].id));
        assert!(!index.contains("b", ops[3].id));
    }
}

#[test]
fn the_sketch_cache_is_built_only_when_a_sketch_needs_it() {
    let ops: Vec<Op> = (0..3000u64)
        .map(|i| op(["a", "b"][(i % 4 == 0) as usize], 10 + i, 1 + i % 3))
        .collect();
    let cached = |index: &Index, name: &str| index.collections[name].sketch.get().cloned();
    // Bulk indexing and catching up build nothing.
    let mut index = Index::from_ops(&ops[..1000]);
    index.insert_ops(&ops[1000..2000]);
    for name in ["a", "b"] {
        assert_eq!(cached(&index, name), None, "{name}");
    }
    // A sketch over "a" builds "a"'s cache alone, from every key.
    let scope = Scope::new(["a"]);
    let cut = index.frontier(&scope);
    let mut local = index.local_sketch(&scope, &cut);
    let whole = Index::from_ops(&ops[..2000]);
    assert_eq!(
        cached(&index, "a").as_deref(),
        Some(whole.collections["a"].cached_sketch())
    );
    assert_eq!(cached(&index, "b"), None);
    let first = index.sketch(&scope, &mut local, 0, 40, 1 << 20);
    let mut want = vec![Symbol::default(); 40];
    for o in ops[..2000].iter().filter(|o| o.collection == "a") {
        sketch::add_item(&mut want, 0, &o.id.to_bytes(), 1);
    }
    assert_eq!(first, want);
    // Inserts that keep the target update the cache in place; it stays a fresh build's.
    let target = cache_target(index.collections["a"].trie.len());
    index.insert_ops(&ops[2000..2010]);
    assert_eq!(cache_target(index.collections["a"].trie.len()), target);
    let now = Index::from_ops(&ops[..2010]);
    assert_eq!(
        cached(&index, "a").as_deref(),
        Some(now.collections["a"].cached_sketch())
    );
    // Growing past the target drops it; warming builds every collection's.
    index.insert_ops(&ops[2010..]);
    assert_ne!(cache_target(index.collections["a"].trie.len()), target);
    assert_eq!(cached(&index, "a"), None);
    index.warm_sketches();
    let all = Index::from_ops(&ops);
    for name in ["a", "b"] {
        assert_eq!(
            cached(&index, name).as_deref(),
            Some(all.collections[name].cached_sketch()),
            "{name}"
        );
    }
}

#[test]
fn batches_with_ids_repeated_across_collections_keep_each_first_copy() {
    // Model: of all ops given, in order, the first of each id is what a log keeps, and what
    // every insert path must index. Ids come from a small space, so repeats within and
    // across collections and batches are common; some batches come in id order.
    let scope = Scope::new(["a", "b", "c"]);
    for seed in 0..1000u64 {
        let mut s = seed;
        let mut next = move |n: u64| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        };
        let batches: Vec<Vec<Op>> = (0..1 + next(4))
            .map(|_| {
                // Collections in runs, as a log's ops often are; ids from a small space
                // (repeats everywhere) or a wide one (repeats only where made below).
                let mut c = 0;
                let sorted = next(3) != 0;
                let ms = if sorted { 5000 } else { 80 };
                let mut b: Vec<Op> = (0..next(60))
                    .map(|_| {
                        if next(4) == 0 {
                            c = next(3) as usize;
                        }
                        op(["a", "b", "c"][c], 10 + next(ms), 1 + next(2))
                    })
                    .collect();
                if sorted {
                    // In id order, then a few ops moved or copied into another collection:
                    // the one spot that is out of order decides.
                    b.sort_by_key(|o| o.id);
                    for _ in 0..next(3) {
                        if b.len() > 1 {
                            let from = next(b.len() as u64) as usize;
                            let to = next(b.len() as u64) as usize;
                            if next(2) == 0 {
                                let mut o = b[from].clone();
                                o.collection = ["a", "b", "c"][next(3) as usize].into();
                                b.insert(to, o);
                            } else {
                                b.swap(from, to);
                            }
                        }
                    }
                }
                b
            })
            .collect();
        let mut kept: Vec<Op> = Vec::new();
        for o in batches.iter().flatten() {
            if !kept.iter().any(|k| k.id == o.id) {
                kept.push(o.clone());
            }
        }
        let want = Index::from_ops(&kept);
        let (mut encoded, mut decoded, mut single) = (Index::new(), Index::new(), Index::new());
        // Batches and single inserts in turn: a single insert must see what a batch indexed
        // in another collection, and the other way round.
        let mut mixed = Index::new();
        for (i, b) in batches.iter().enumerate() {
            encoded.insert_encoded(&EncodedOps::from_ops(b).expect("encodable"));
            decoded.insert_ops(b);
            for o in b {
                single.insert_op(o);
            }
            if (i as u64 + seed).is_multiple_of(2) {
                mixed.insert_ops(b);
            } else {
                for o in b {
                    mixed.insert_op(o);
                }
            }
        }
        for (path, index) in [
            ("encoded", &encoded),
            ("ops", &decoded),
            ("single", &single),
            ("mixed", &mixed),
        ] {
            assert_largest_is_kept(index);
            assert_eq!(index.len(), kept.len() as u64, "seed {seed}, {path}");
            assert_eq!(index.root(&scope), want.root(&scope), "seed {seed}, {path}");
            for o in &kept {
                assert!(index.contains(&o.collection, o.id), "seed {seed}, {path}");
            }
            index.check_sketch_caches().expect("consistent");
        }
    }
}

/// The index's largest key is the largest of its collections'.
fn assert_largest_is_kept(index: &Index) {
    let of_tries = index
        .collections
        .values()
        .filter_map(|c| c.trie.last())
        .max();
    assert_eq!(of_tries.copied().unwrap_or([0; 16]), index.largest);
}

#[test]
fn new_ids_look_at_no_other_collection_and_held_ones_are_still_found() {
    let mut index = Index::new();
    for (c, ms) in [("a", 10), ("b", 20), ("c", 30)] {
        assert!(index.insert_op(&op(c, ms, 1)));
    }
    let one = |o: Op| EncodedOps::from_ops(&[o]).expect("encodable");
    let id = |ms, replica| {
        OpId::new(
            Timestamp::new(ms, 0).expect("in range"),
            ReplicaId::new(replica),
        )
    };
    // Above the largest key: indexed, without a look at the other collections.
    assert_eq!(index.insert_encoded(&one(op("a", 40, 1))), 1);
    assert_eq!(index.insert_ops(&[op("b", 45, 2), op("b", 46, 2)]), 2);
    // Ids another collection holds, the largest key itself among them (where the shortcut
    // must not be taken): looked up there, and not indexed again.
    assert_eq!(index.insert_encoded(&one(op("c", 46, 2))), 0);
    assert_eq!(index.insert_ops(&[op("c", 20, 1)]), 0);
    assert_eq!(index.insert_ops(&[op("a", 45, 2), op("a", 47, 2)]), 1);
    assert!(!index.insert_op(&op("c", 47, 2)));
    assert!(!index.insert_op(&op("a", 20, 1)));
    // Below the largest key, held nowhere: indexed.
    assert!(index.insert_op(&op("c", 25, 1)));
    assert_eq!(index.insert_ops(&[op("b", 26, 1)]), 1);
    assert!(!index.contains("c", id(46, 2)) && index.contains("b", id(46, 2)));
    assert!(index.contains("a", id(47, 2)) && !index.contains("c", id(47, 2)));
    assert_eq!(index.len(), 9);
    assert_largest_is_kept(&index);
}

#[test]
fn a_scope_over_many_collections_sees_what_an_index_of_just_its_collections_holds() {
    // Names that share prefixes, differ in length, and sort by bytes beyond ASCII, so that
    // the walk side by side meets every order of names.
    let names: Vec<String> = (0..300u64)
        .map(|i| match i % 5 {
            0 => format!("c{i}"),
            1 => format!("c{i}/sub"),
            2 => format!("é{}", i % 7),
            3 => "c".repeat(1 + (i % 9) as usize),
            _ => format!("Z{i:04}"),
        })
        .collect();
    let mut all = Index::new();
    let mut ops = Vec::new();
    for (i, n) in names.iter().enumerate() {
        for j in 0..1 + i as u64 % 3 {
            ops.push(op(n, 10 + i as u64 * 4 + j, 1 + j));
        }
    }
    all.insert_ops(&ops);
    let (mut walks, mut lookups) = (0, 0);
    for seed in 0..200u64 {
        let mut next = crate::test_rng::draws(seed);
        // Up to every name (a third of the seeds a few, which are looked up), with some the
        // index does not hold, also before and after every held name.
        let size = if seed % 3 == 0 {
            next(20)
        } else {
            next(names.len() as u64 + 20)
        };
        let picked: Vec<String> = (0..size)
            .map(|k| match next(12) {
                0 => format!("absent{k}"),
                1 => "A".to_owned(),
                2 => "\u{10FFFF}".to_owned(),
                _ => names[next(names.len() as u64) as usize].clone(),
            })
            .collect();
        let scope = Scope::new(picked.iter().cloned());
        match all.in_scope(&scope) {
            InScope::Walk { .. } => walks += 1,
            InScope::Lookups { .. } => lookups += 1,
        }
        let only: Vec<Op> = ops
            .iter()
            .filter(|o| scope.contains(&o.collection))
            .cloned()
            .collect();
        let just = Index::from_ops(&only);
        assert_eq!(all.root(&scope), just.root(&scope), "seed {seed}: root");
        assert_eq!(all.count(&scope), only.len() as u64, "seed {seed}: count");
        assert_eq!(all.frontier(&scope), just.frontier(&scope), "seed {seed}");
        let seen: Vec<&str> = all.in_scope(&scope).map(|(n, _)| n).collect();
        let mut want: Vec<&str> = only.iter().map(|o| o.collection.as_str()).collect();
        want.sort_unstable();
        want.dedup();
        assert_eq!(seen, want, "seed {seed}: collections in scope");
    }
    assert!(
        walks > 20 && lookups > 20,
        "{walks} walks, {lookups} lookups"
    );
}
