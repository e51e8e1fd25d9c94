//! The sync scenarios of `--bin sync` on automerge's sync protocol and yrs's state-vector
//! exchange, on the same data shaped as their documents.
//!
//! The data: `ops` map puts of a 90-byte string under a distinct key (about 100 bytes an op),
//! written round-robin by `actors` writers (op `i` by writer `i % actors`), each write its own
//! change (automerge) or transaction (yrs). Each writer writes in a document of its own, so
//! that its changes depend only on its own earlier ones; side A merges all of them. A side that
//! misses ops misses a suffix of some writers' chains (both libraries can only hold a causally
//! closed set: a change without its dependencies is not applied), chosen to match the
//! scenario: the last ops in global order for a tail, the last op of random writers (or the
//! last `k / actors` ops of every writer) for scattered gaps.

use std::collections::BTreeSet;

/// One peer measurement, in the fields of weft's JSON line.
#[derive(Clone, Debug)]
pub struct PeerOutcome {
    /// `"automerge 0.12"` or `"yrs 0.28"`.
    pub system: &'static str,
    /// Ops on the full side.
    pub ops: usize,
    /// Ops the other side lacks.
    pub diff: usize,
    /// Messages in the busier direction (a round trip is one message each way).
    pub round_trips: f64,
    /// Time to the union with both sides sending at once, in round trips (each lockstep
    /// exchange of messages is half a round trip), as weft's `round_trips` measures it.
    pub rt_time: f64,
    /// The encoded size of the missing ops (see [`automerge_scenario`], [`yrs_scenario`]).
    pub payload_bytes: u64,
    /// Everything else on the wire; negative when the system sends the missing ops in fewer
    /// bytes than the payload measure (automerge's compressed whole-document message).
    pub overhead_bytes: i64,
    /// Time in the sync exchange on both sides (building the documents is not counted).
    pub cpu_ms: f64,
}

/// The ops each writer misses on side B, as a count of its last ops, for a scenario.
///
/// `scenario` is one of weft's scenario names; `seed` picks the writers for scattered gaps.
pub fn suffix_drops(scenario: &str, ops: usize, actors: usize, seed: u64) -> Vec<usize> {
    let per = |a: usize| ops / actors + usize::from(a < ops % actors);
    let mut drops = vec![0; actors];
    match scenario {
        "identical" => {}
        "one_side_empty" => {
            for (a, d) in drops.iter_mut().enumerate() {
                *d = per(a);
            }
        }
        "tail_100" => {
            for i in ops.saturating_sub(100)..ops {
                drops[i % actors] += 1;
            }
        }
        s => {
            let k: usize = s
                .strip_prefix("scattered_")
                .and_then(|k| k.parse().ok())
                .expect("known scenario");
            let mut rng = seed;
            let mut next = || {
                rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = rng;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            };
            for d in &mut drops {
                *d = k / actors;
            }
            let mut extra = BTreeSet::new();
            while extra.len() < k % actors {
                extra.insert((next() % actors as u64) as usize);
            }
            for a in extra {
                drops[a] += 1;
            }
            for (a, d) in drops.iter_mut().enumerate() {
                *d = (*d).min(per(a));
            }
        }
    }
    drops
}

fn key(i: usize) -> String {
    format!("k{i:07}")
}

fn value(i: usize) -> String {
    let mut s = format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while s.len() < 90 {
        s.push_str(&format!("{:x}", s.len() * 7919 + i));
    }
    s.truncate(90);
    s
}

/// Each writer's changes, in its order: one change per put.
pub fn automerge_changes(ops: usize, actors: usize) -> Vec<Vec<automerge::Change>> {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ROOT};
    (0..actors)
        .map(|a| {
            let mut actor = [0u8; 16];
            actor[..8].copy_from_slice(&(a as u64 + 1).to_be_bytes());
            let mut doc = AutoCommit::new().with_actor(ActorId::from(actor));
            for i in (a..ops).step_by(actors) {
                doc.put(ROOT, key(i), value(i).as_str())
                    .expect("automerge: put");
                doc.commit();
            }
            doc.get_changes(&[])
        })
        .collect()
}

fn automerge_doc<'a>(changes: impl Iterator<Item = &'a automerge::Change>) -> automerge::Automerge {
    let mut doc = automerge::Automerge::new();
    doc.apply_changes(changes.cloned().collect::<Vec<_>>())
        .expect("automerge: apply changes");
    doc
}

/// automerge's sync protocol between the full side A and side B, which lacks the last
/// `drops[w]` changes of writer `w`. Both sides generate messages at once, then receive each
/// other's, until neither has anything to send. Payload: the summed `Change::bytes` of the
/// changes B lacked (each change as it travels alone in a sync message).
#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
pub fn automerge_scenario(changes: &[Vec<automerge::Change>], drops: &[usize]) -> PeerOutcome {
    use automerge::sync::{Message, State, SyncDoc};
    let ops: usize = changes.iter().map(Vec::len).sum();
    let mut a = automerge_doc(changes.iter().flatten());
    let mut b = automerge_doc(
        changes
            .iter()
            .zip(drops)
            .flat_map(|(c, &d)| c[..c.len() - d].iter()),
    );
    let mut payload = 0u64;
    for (c, &d) in changes.iter().zip(drops) {
        for change in &c[c.len() - d..] {
            let mut change = change.clone();
            payload += change.bytes().len() as u64;
        }
    }
    let diff: usize = drops.iter().sum();
    let start = std::time::Instant::now();
    let (mut sa, mut sb) = (State::new(), State::new());
    let (mut sent_a, mut sent_b, mut wire, mut steps) = (0u64, 0u64, 0u64, 0u64);
    let mut union_at = (a.get_heads() == b.get_heads()).then_some(0);
    loop {
        let ma = a.generate_sync_message(&mut sa).map(Message::encode);
        let mb = b.generate_sync_message(&mut sb).map(Message::encode);
        if ma.is_none() && mb.is_none() {
            break;
        }
        steps += 1;
        if let Some(m) = ma {
            sent_a += 1;
            wire += m.len() as u64;
            let m = Message::decode(&m).expect("automerge: decode");
            b.receive_sync_message(&mut sb, m)
                .expect("automerge: receive");
        }
        if let Some(m) = mb {
            sent_b += 1;
            wire += m.len() as u64;
            let m = Message::decode(&m).expect("automerge: decode");
            a.receive_sync_message(&mut sa, m)
                .expect("automerge: receive");
        }
        if union_at.is_none() && b.get_heads() == a.get_heads() {
            union_at = Some(steps);
        }
        assert!(steps < 1000, "automerge: no convergence");
    }
    let cpu_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(a.get_heads(), b.get_heads(), "automerge: not converged");
    PeerOutcome {
        system: "automerge 0.12",
        ops,
        diff,
        round_trips: sent_a.max(sent_b) as f64,
        rt_time: union_at.unwrap_or(0) as f64 / 2.0,
        payload_bytes: payload,
        overhead_bytes: wire as i64 - payload as i64,
        cpu_ms,
    }
}

/// Each writer's transactions as v1 updates, in its order: one insert per transaction.
pub fn yrs_updates(ops: usize, actors: usize) -> Vec<Vec<Vec<u8>>> {
    use yrs::{Doc, Map, Transact};
    (0..actors)
        .map(|a| {
            let doc = Doc::with_client_id(a as u64 + 1);
            let map = doc.get_or_insert_map("m");
            (a..ops)
                .step_by(actors)
                .map(|i| {
                    let mut txn = doc.transact_mut();
                    map.insert(&mut txn, key(i), value(i));
                    txn.encode_update_v1()
                })
                .collect()
        })
        .collect()
}

fn yrs_doc<'a>(updates: impl Iterator<Item = &'a Vec<u8>>) -> yrs::Doc {
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, Transact, Update};
    let merged = yrs::merge_updates_v1(updates).expect("yrs: merge");
    let doc = Doc::new();
    doc.get_or_insert_map("m");
    doc.transact_mut()
        .apply_update(Update::decode_v1(&merged).expect("yrs: decode"))
        .expect("yrs: apply");
    doc
}

/// yrs's state-vector exchange between the full side A and side B, which lacks the last
/// `drops[w]` transactions of writer `w`: each side sends its state vector, the other answers
/// with `encode_diff_v1` against it (one round trip). Payload: the size of one v1 update
/// holding exactly the missing transactions (`merge_updates_v1` of their updates).
#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
pub fn yrs_scenario(updates: &[Vec<Vec<u8>>], drops: &[usize]) -> PeerOutcome {
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{ReadTxn, StateVector, Transact, Update};
    let ops: usize = updates.iter().map(Vec::len).sum();
    let a = yrs_doc(updates.iter().flatten());
    let b = yrs_doc(
        updates
            .iter()
            .zip(drops)
            .flat_map(|(u, &d)| u[..u.len() - d].iter()),
    );
    let missing: Vec<&Vec<u8>> = updates
        .iter()
        .zip(drops)
        .flat_map(|(u, &d)| u[u.len() - d..].iter())
        .collect();
    let payload = if missing.is_empty() {
        0
    } else {
        yrs::merge_updates_v1(missing).expect("yrs: merge").len() as u64
    };
    let diff: usize = drops.iter().sum();
    let start = std::time::Instant::now();
    let sv_a = a.transact().state_vector().encode_v1();
    let sv_b = b.transact().state_vector().encode_v1();
    let to_b = a
        .transact()
        .encode_diff_v1(&StateVector::decode_v1(&sv_b).expect("yrs: sv"));
    let to_a = b
        .transact()
        .encode_diff_v1(&StateVector::decode_v1(&sv_a).expect("yrs: sv"));
    b.transact_mut()
        .apply_update(Update::decode_v1(&to_b).expect("yrs: decode"))
        .expect("yrs: apply");
    a.transact_mut()
        .apply_update(Update::decode_v1(&to_a).expect("yrs: decode"))
        .expect("yrs: apply");
    let cpu_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(
        a.transact().state_vector(),
        b.transact().state_vector(),
        "yrs: not converged"
    );
    let wire = (sv_a.len() + sv_b.len() + to_a.len() + to_b.len()) as u64;
    PeerOutcome {
        system: "yrs 0.28",
        ops,
        diff,
        round_trips: 1.0,
        rt_time: if diff == 0 { 0.0 } else { 1.0 },
        payload_bytes: payload,
        overhead_bytes: wire as i64 - payload as i64,
        cpu_ms,
    }
}
