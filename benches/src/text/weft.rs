//! weft on the traces: a [`Replica`] per agent on [`MemoryStorage`], with a `docs` collection
//! whose record `d` has a text field `body`. Agent 0's replica inserts the record and the others
//! receive that op before anything else, so all edit the same text. Each txn is one
//! [`Replica::transact`] with a `delete_text` and an `insert_text` per patch (code point
//! positions); the update carried to other agents is the transaction's ops ([`Transaction::ops`]),
//! applied with [`Replica::apply_remote`]. The full history is every op above the empty version
//! vector, in op id order, in one [`history::encode_history`] batch (the per-op
//! [`codec::encode_ops`] size is shown beside it), applied to a fresh replica with
//! [`Replica::apply_encoded`].
//!
//! [`Transaction::ops`]: crdt_core::Transaction::ops

use crdt_core::{
    ApplyOutcome, Collection, Field, MemoryStorage, Op, Replica, Schema, VersionVector, codec,
    history,
};
use hlc::SystemClock;
use rand::SeedableRng;

use super::replay::{ReplayError, TextReplica, fail};
use super::trace::Patch;

const COLLECTION: &str = "docs";
const KEY: &str = "d";
const FIELD: &str = "body";

type Mem = Replica<MemoryStorage, SystemClock>;

/// One weft replica.
pub struct Weft {
    replica: Mem,
}

fn open(seed: u64) -> Result<Mem, ReplayError> {
    let collection = Collection::new(COLLECTION)
        .field(Field::string("title"))
        .field(Field::text(FIELD));
    let schema = Schema::new(1)
        .collection(collection)
        .map_err(fail("weft: schema"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Replica::open(MemoryStorage::new(), SystemClock, schema, &mut rng).map_err(fail("weft: open"))
}

/// A position or length as the transaction API takes it (code point counts of in-memory
/// strings fit in 64 bits).
fn pos<T: TryFrom<usize>>(n: usize) -> T {
    T::try_from(n).unwrap_or_else(|_| panic!("position {n} does not fit the API's integer"))
}

fn check(outcome: &ApplyOutcome) -> Result<(), ReplayError> {
    if !outcome.rejected.is_empty() {
        return Err(ReplayError::new(format!(
            "weft: {} ops rejected, the first {:?}",
            outcome.rejected.len(),
            outcome.rejected[0]
        )));
    }
    if outcome.buffered > 0 {
        return Err(ReplayError::new(format!(
            "weft: {} ops wait for missing dependencies",
            outcome.buffered
        )));
    }
    Ok(())
}

impl TextReplica for Weft {
    type Update = Vec<Op>;

    fn name() -> String {
        "weft".into()
    }

    fn open_all(agents: usize) -> Result<Vec<Self>, ReplayError> {
        let mut first = open(1)?;
        first
            .insert(COLLECTION, Some(KEY), [("title", "t".into())])
            .map_err(fail("weft: insert the record"))?;
        let record = if agents > 1 {
            first
                .ops_since(&VersionVector::new())
                .map_err(fail("weft: read ops"))?
        } else {
            Vec::new()
        };
        let mut replicas = vec![Self { replica: first }];
        for agent in 1..agents {
            let mut replica = open(agent as u64 + 1)?;
            let outcome = replica
                .apply_remote(record.iter().cloned())
                .map_err(fail("weft: apply the record"))?;
            check(&outcome)?;
            replicas.push(Self { replica });
        }
        Ok(replicas)
    }

    fn local(
        &mut self,
        patches: &[Patch],
        keep_update: bool,
    ) -> Result<Option<Vec<Op>>, ReplayError> {
        self.replica
            .transact(|tx| {
                for p in patches {
                    if p.del > 0 {
                        tx.delete_text(COLLECTION, KEY, FIELD, pos(p.pos), pos(p.del))?;
                    }
                    if !p.ins.is_empty() {
                        tx.insert_text(COLLECTION, KEY, FIELD, pos(p.pos), &p.ins)?;
                    }
                }
                Ok(keep_update.then(|| tx.ops().to_vec()))
            })
            .map_err(fail("weft: transaction"))
    }

    fn receive(&mut self, updates: &[&Vec<Op>]) -> Result<(), ReplayError> {
        let ops = updates.iter().flat_map(|u| u.iter().cloned());
        let outcome = self
            .replica
            .apply_remote(ops)
            .map_err(fail("weft: apply_remote"))?;
        check(&outcome)
    }

    fn text(&self) -> Result<String, ReplayError> {
        self.replica
            .text(COLLECTION, KEY, FIELD)
            .map_err(fail("weft: text"))
    }

    fn op_count(&self) -> Option<usize> {
        self.replica
            .ops_since(&VersionVector::new())
            .ok()
            .map(|ops| ops.len())
    }

    fn alt_encoded(&self) -> Option<usize> {
        let ops = self.replica.ops_since(&VersionVector::new()).ok()?;
        Some(codec::encode_ops(&ops).len())
    }

    fn export(&mut self) -> Result<Vec<u8>, ReplayError> {
        let ops = self
            .replica
            .ops_since(&VersionVector::new())
            .map_err(fail("weft: read ops"))?;
        Ok(history::encode_history(&ops))
    }

    fn load(bytes: Vec<u8>) -> Result<Self, ReplayError> {
        let mut replica = open(u64::from(u32::MAX))?;
        let outcome = replica
            .apply_encoded(&bytes)
            .map_err(fail("weft: apply_encoded"))?;
        check(&outcome)?;
        Ok(Self { replica })
    }
}
