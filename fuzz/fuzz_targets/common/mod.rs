//! What several targets share: a schema with every field kind, and a replica's visible state.
#![allow(dead_code, reason = "each target uses part of it")]

use crdt_core::{
    Collection, ConflictPolicy, Field, MemoryStorage, PrimaryKey, Query, Replica, ScalarType,
    Schema, Storage,
};
use hlc::{Clock, ManualClock};
use weft::testing::Gen;

/// Collection `c` has one field of each kind and policy; `g` has generated keys.
pub fn schema() -> Schema {
    let max = ConflictPolicy::merge(|siblings| {
        siblings
            .iter()
            .filter_map(|v| v.as_int())
            .max()
            .map_or(weft::Value::Null, weft::Value::Int)
    });
    Schema::new(1)
        .collection(
            Collection::new("c")
                .field(Field::string("s"))
                .field(Field::int("n").policy(max))
                .field(Field::int("m").policy(ConflictPolicy::Manual))
                .field(Field::string("u").unique())
                .field(Field::counter("votes"))
                .field(Field::set("tags", ScalarType::String))
                .field(Field::text("body"))
                .field(Field::list("items", ScalarType::Int))
                .field(Field::reference("r", "c")),
        )
        .and_then(|s| {
            s.collection(
                Collection::new("g")
                    .primary_key(PrimaryKey::Generated)
                    .field(Field::any("x")),
            )
        })
        .expect("the fuzz schema is valid")
}

/// A fresh in-memory replica whose clock is far ahead, so that the drift check passes
/// (almost) every timestamp a fuzzer makes up.
pub fn replica(seed: u64) -> Replica<MemoryStorage, ManualClock> {
    replica_on(MemoryStorage::new(), seed).expect("an empty store opens")
}

/// A replica on `storage`, with the far-ahead clock.
pub fn replica_on<S: Storage>(
    storage: S,
    seed: u64,
) -> Result<Replica<S, ManualClock>, crdt_core::OpenError> {
    Replica::open(
        storage,
        ManualClock::new(1 << 47),
        schema(),
        &mut Gen::new(seed),
    )
}

/// Everything a replica shows: rows (by key) and conflicts of each collection, and the ids
/// of the ops it stores.
pub fn state<S: Storage, C: Clock>(r: &Replica<S, C>) -> String {
    let mut out = String::new();
    for c in ["c", "g"] {
        let mut rows = r.query(&Query::new(c)).expect("the collection exists");
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        let conflicts = r.conflicts(c).expect("the collection exists");
        out += &format!("{c}: {rows:?} {conflicts:?}\n");
    }
    let ids: Vec<_> = r.storage().scan().map(|op| op.map(|op| op.id)).collect();
    out += &format!("ops: {ids:?}");
    out
}
