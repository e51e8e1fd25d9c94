//! weft on the map workload: a `records` collection with four dynamically typed
//! last-writer-wins fields; each record inserted up front, then each write a
//! [`Replica::set`], which is its own committed transaction. The history is what sync sends to
//! an empty peer: every op above the empty version vector, encoded in batches of
//! [`BATCH_OPS`]; the fresh replica applies each batch with [`Replica::apply_encoded`].

use crdt_core::{Collection, Field, MemoryStorage, Replica, Schema, Value, VersionVector, codec};
use hlc::SystemClock;
use rand::SeedableRng;

use crate::map_workload::{FIELDS, MapSystem, Write, WriteValue, record_key};

/// Ops per encoded batch in the exported history.
pub const BATCH_OPS: usize = 10_000;

const COLLECTION: &str = "records";

type Mem = Replica<MemoryStorage, SystemClock>;

/// weft's [`MapSystem`].
#[derive(Default)]
pub struct Weft {
    source: Option<Mem>,
    fresh: Option<Mem>,
}

fn open(seed: u64) -> Mem {
    let schema = FIELDS
        .iter()
        .fold(Collection::new(COLLECTION), |c, f| c.field(Field::any(f)));
    let schema = Schema::new(1).collection(schema).expect("weft: schema");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Replica::open(MemoryStorage::new(), SystemClock, schema, &mut rng).expect("weft: open")
}

fn value(v: &WriteValue) -> Value {
    match v {
        WriteValue::Int(n) => Value::Int(*n),
        WriteValue::Str(s) => Value::String(s.clone()),
    }
}

impl MapSystem for Weft {
    fn name(&self) -> &'static str {
        "weft"
    }

    fn local(&mut self, writes: &[Write], records: u32) {
        let mut replica = open(1);
        let keys: Vec<String> = (0..records).map(record_key).collect();
        for key in &keys {
            replica
                .insert(COLLECTION, Some(key), [(FIELDS[0], Value::from(""))])
                .expect("weft: insert");
        }
        for w in writes {
            replica
                .set(
                    COLLECTION,
                    &keys[w.record as usize],
                    FIELDS[usize::from(w.field)],
                    value(&w.value),
                )
                .expect("weft: set");
        }
        self.source = Some(replica);
    }

    fn export(&mut self) -> Vec<Vec<u8>> {
        let replica = self.source.as_ref().expect("local ran first");
        let ops = replica
            .ops_since(&VersionVector::new())
            .expect("weft: read ops");
        ops.chunks(BATCH_OPS).map(codec::encode_ops).collect()
    }

    fn drop_source(&mut self) {
        self.source = None;
    }

    fn merge_into_fresh(&mut self, messages: Vec<Vec<u8>>) {
        let mut replica = open(2);
        for message in messages {
            let outcome = replica.apply_encoded(&message).expect("weft: apply");
            assert!(
                outcome.rejected.is_empty(),
                "weft: rejected {:?}",
                outcome.rejected
            );
        }
        self.fresh = Some(replica);
    }

    fn read_fresh(&self, record: u32, field: u8) -> Option<WriteValue> {
        let replica = self.fresh.as_ref().expect("merge_into_fresh ran first");
        let row = replica
            .get(COLLECTION, &record_key(record))
            .expect("weft: get")?;
        match row.get(FIELDS[usize::from(field)])? {
            Value::Int(n) => Some(WriteValue::Int(*n)),
            Value::String(s) if !(field == 0 && s.is_empty()) => Some(WriteValue::Str(s.clone())),
            Value::Null | Value::String(_) => None,
            other => panic!("weft: unexpected {other:?}"),
        }
    }

    fn drop_fresh(&mut self) {
        self.fresh = None;
    }
}
