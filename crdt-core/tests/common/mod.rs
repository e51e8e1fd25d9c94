//! Shared test fixtures: a schema exercising every field kind and policy, and replicas on a
//! shared manual clock.
#![allow(dead_code, unreachable_pub, missing_docs)]

use crdt_core::{
    Collection, ConflictPolicy, Field, MemoryStorage, PrimaryKey, Query, Replica, ScalarType,
    Schema, Storage, Value,
};
use hlc::ManualClock;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub type Mem = Replica<MemoryStorage, ManualClock>;

pub const START_MS: u64 = 1_795_316_400_000;

/// A non-commutative merge handler: the siblings joined with `+` in the order given.
pub fn concat(values: &[&Value]) -> Value {
    let parts: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
    Value::String(parts.join("+"))
}

pub fn schema() -> Schema {
    Schema::new(1)
        .collection(
            Collection::new("users")
                .field(Field::string("name").required())
                .field(Field::string("email").unique())
                .field(Field::int("age").default_value(0))
                .field(Field::string("bio").policy(ConflictPolicy::Manual))
                .field(Field::string("motto").policy(ConflictPolicy::merge(concat)))
                .field(Field::counter("karma"))
                .field(Field::set("tags", ScalarType::String))
                .field(Field::reference("team", "teams")),
        )
        .and_then(|s| {
            s.collection(
                Collection::new("teams")
                    .primary_key(PrimaryKey::Generated)
                    .field(Field::string("title"))
                    .field(Field::float("budget"))
                    .field(Field::bool("active"))
                    .field(Field::bytes("logo"))
                    .field(Field::timestamp("founded")),
            )
        })
        .and_then(|s| {
            s.collection(
                Collection::new("notes")
                    .field(Field::string("title"))
                    .field(Field::text("body"))
                    .field(Field::list("items", ScalarType::Int)),
            )
        })
        .expect("test schema is valid")
}

pub fn replica(clock: &ManualClock, seed: u64) -> Mem {
    let mut rng = StdRng::seed_from_u64(seed);
    Replica::open(MemoryStorage::new(), clock.clone(), schema(), &mut rng).expect("opens")
}

/// Everything a reader can observe, for comparing replicas.
pub fn snapshot<S: Storage>(r: &Replica<S, ManualClock>) -> String {
    let mut out = String::new();
    for c in ["users", "teams", "notes"] {
        let rows = r.query(&Query::new(c)).expect("query");
        let conflicts = r.conflicts(c).expect("conflicts");
        out.push_str(&format!("{c}: {rows:?}\nconflicts: {conflicts:?}\n"));
    }
    out
}

/// Sends `from` every op `to` lacks.
pub fn sync(from: &Mem, to: &mut Mem) {
    let ops = from.ops_since(to.version_vector()).expect("ops");
    to.apply_remote(ops).expect("apply");
}
