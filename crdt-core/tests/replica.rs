//! Behaviour of the Replica: schema checks, transactions, conflict policies, queries, live
//! queries, remote apply and hydration.

mod common;

use common::*;
use crdt_core::{
    Cmp, Conflict, Event, FieldValue, InvalidOp, MemoryStorage, Op, OpId, Order, Payload, Query,
    RejectReason, Replica, Report, Storage, Value, VersionVector, WriteError,
};
use hlc::{ManualClock, Timestamp};
use rand::SeedableRng;

/// The id of the replica's latest own op.
fn last_op(r: &Replica<MemoryStorage, ManualClock>) -> OpId {
    OpId::new(r.version_vector().get(r.id()).unwrap(), r.id())
}

fn user(r: &mut Mem, key: &str, name: &str) {
    r.insert("users", Some(key), [("name", name.into())])
        .unwrap();
}

#[test]
fn writes_that_do_not_fit_the_schema_name_the_field() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    let err = r
        .insert("users", Some("a"), [("age", 3.into())])
        .unwrap_err();
    assert!(matches!(&err, WriteError::MissingRequired { field, .. } if field == "name"));
    let err = r
        .insert("users", Some("a"), [("name", 5.into())])
        .unwrap_err();
    assert!(
        matches!(&err, WriteError::Invalid(InvalidOp::Type { field, .. }) if field == "name"),
        "{err}"
    );
    assert!(err.to_string().contains("users.name"), "{err}");
    let err = r
        .insert(
            "users",
            Some("a"),
            [("name", "A".into()), ("shoe", 1.into())],
        )
        .unwrap_err();
    assert!(
        matches!(&err, WriteError::Invalid(InvalidOp::UnknownField { field, .. }) if field == "shoe")
    );
    let err = r
        .insert("nope", Some("a"), [("name", "A".into())])
        .unwrap_err();
    assert!(matches!(
        err,
        WriteError::Invalid(InvalidOp::UnknownCollection(_))
    ));
    let err = r.insert("users", None, [("name", "A".into())]).unwrap_err();
    assert!(matches!(err, WriteError::Key { .. }));
    let err = r
        .insert("teams", Some("k"), [("title", "T".into())])
        .unwrap_err();
    assert!(matches!(err, WriteError::Key { .. }));
    let err = r.set("users", "ghost", "name", "x").unwrap_err();
    assert!(matches!(err, WriteError::NoSuchRecord { .. }));
    // Nothing of the failed writes was stored.
    assert_eq!(r.storage().len().unwrap(), 0);
}

#[test]
fn inserts_fill_defaults_and_generate_keys() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    user(&mut r, "a", "Ann");
    let row = r.get("users", "a").unwrap().unwrap();
    assert_eq!(row.get("age"), Some(&Value::Int(0)));
    assert_eq!(row.get("email"), Some(&Value::Null));
    assert_eq!(row.counter("karma"), Some(0));
    let k1 = r.insert("teams", None, [("title", "x".into())]).unwrap();
    let k2 = r.insert("teams", None, [("title", "y".into())]).unwrap();
    assert_ne!(k1, k2);
    assert_eq!(
        r.get("teams", &k2).unwrap().unwrap().get("title"),
        Some(&"y".into())
    );
    let err = r
        .insert("users", Some("a"), [("name", "again".into())])
        .unwrap_err();
    assert!(matches!(err, WriteError::AlreadyExists { .. }));
}

#[test]
fn a_failed_transaction_leaves_no_trace() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    user(&mut r, "a", "Ann");
    let (sub, _) = r.subscribe(Query::new("users")).unwrap();
    let before = snapshot(&r);
    let stored = r.storage().len().unwrap();
    let vv = r.version_vector().clone();
    let err = r
        .transact(|tx| {
            tx.set("users", "a", "name", "Changed")?;
            tx.increment("users", "a", "karma", 5)?;
            tx.insert("users", Some("b"), [("name", "Bob".into())])?;
            tx.set("users", "b", "age", "not a number")
        })
        .unwrap_err();
    assert!(matches!(err, WriteError::Invalid(InvalidOp::Type { .. })));
    assert_eq!(snapshot(&r), before);
    assert_eq!(r.storage().len().unwrap(), stored);
    assert_eq!(r.version_vector(), &vv);
    assert_eq!(
        r.poll_event(),
        None,
        "no event for a rolled-back transaction"
    );
    let _ = sub;
}

#[test]
fn a_transaction_sees_its_own_writes_and_commits_as_one_append() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    let n = r
        .transact(|tx| {
            tx.insert("users", Some("a"), [("name", "Ann".into())])?;
            tx.increment("users", "a", "karma", 2)?;
            tx.increment("users", "a", "karma", 3)?;
            tx.add("users", "a", "tags", "x")?;
            let row = tx.get("users", "a").unwrap().unwrap();
            assert_eq!(row.counter("karma"), Some(5));
            Ok(tx.ops().len())
        })
        .unwrap();
    assert_eq!(n, 5, "name, the default age, two increments, one add");
    assert_eq!(r.storage().len().unwrap(), 5);
}

#[test]
fn unique_fields_are_checked_locally_and_conflicts_surface_after_sync() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    user(&mut a, "a1", "Ann");
    a.set("users", "a1", "email", "x@example.com").unwrap();
    user(&mut a, "a2", "Al");
    let err = a.set("users", "a2", "email", "x@example.com").unwrap_err();
    assert!(
        matches!(&err, WriteError::Unique { field, existing, .. } if field == "email" && existing == "a1")
    );
    // Rewriting one's own value is fine.
    a.set("users", "a1", "email", "x@example.com").unwrap();

    // Concurrently, b gives another record the same address.
    user(&mut b, "b1", "Bea");
    b.set("users", "b1", "email", "x@example.com").unwrap();
    sync(&a, &mut b);
    let conflicts = b.conflicts("users").unwrap();
    assert!(conflicts.iter().any(|c| matches!(c,
        Conflict::Unique { field, keys, .. } if field == "email" && keys == &["a1".to_owned(), "b1".to_owned()])));
    let mut reported = false;
    while let Some(e) = b.poll_event() {
        reported |= matches!(e, Event::Report(Report::UniqueViolated { .. }));
    }
    assert!(reported, "the violation is reported, not silently dropped");
    // Resolving: one record takes another address.
    b.set("users", "b1", "email", "bea@example.com").unwrap();
    assert!(b.conflicts("users").unwrap().is_empty());
}

#[test]
fn last_writer_wins_by_op_id() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    user(&mut a, "u", "Ann");
    sync(&a, &mut b);
    a.set("users", "u", "name", "from a").unwrap();
    b.set("users", "u", "name", "from b").unwrap();
    let (wa, wb) = (last_op(&a), last_op(&b));
    sync(&a, &mut b);
    sync(&b, &mut a);
    assert_eq!(snapshot(&a), snapshot(&b));
    let winner = if wa > wb { "from a" } else { "from b" };
    assert_eq!(
        a.get("users", "u").unwrap().unwrap().get("name"),
        Some(&winner.into())
    );
}

#[test]
fn manual_conflicts_list_siblings_until_a_write_that_saw_them() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    user(&mut a, "u", "Ann");
    sync(&a, &mut b);
    a.set("users", "u", "bio", "A").unwrap();
    clock.advance(1);
    b.set("users", "u", "bio", "B").unwrap();
    sync(&a, &mut b);
    sync(&b, &mut a);
    for r in [&a, &b] {
        let conflicts = r.conflicts("users").unwrap();
        let [
            Conflict::Siblings {
                field, siblings, ..
            },
        ] = conflicts.as_slice()
        else {
            panic!("expected one conflict, got {conflicts:?}");
        };
        assert_eq!(field, "bio");
        let values: Vec<_> = siblings.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(values, vec![Value::from("A"), Value::from("B")]);
        // Reads show the last writer's value meanwhile.
        assert_eq!(
            r.get("users", "u").unwrap().unwrap().get("bio"),
            Some(&"B".into())
        );
    }
    a.set("users", "u", "bio", "A and B").unwrap();
    sync(&a, &mut b);
    assert!(b.conflicts("users").unwrap().is_empty());
    assert_eq!(
        b.get("users", "u").unwrap().unwrap().get("bio"),
        Some(&"A and B".into())
    );
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[test]
fn merge_handler_sees_siblings_in_op_id_order_on_every_replica() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b, mut c) = (replica(&clock, 1), replica(&clock, 2), replica(&clock, 3));
    user(&mut a, "u", "Ann");
    sync(&a, &mut b);
    sync(&a, &mut c);
    a.set("users", "u", "motto", "a").unwrap();
    clock.advance(1);
    b.set("users", "u", "motto", "b").unwrap();
    clock.advance(1);
    c.set("users", "u", "motto", "c").unwrap();
    // Deliver in different orders.
    sync(&c, &mut a);
    sync(&b, &mut a);
    sync(&a, &mut b);
    sync(&a, &mut c);
    for r in [&a, &b, &c] {
        assert_eq!(
            r.get("users", "u").unwrap().unwrap().get("motto"),
            Some(&"a+b+c".into())
        );
    }
}

#[test]
fn a_panicking_merge_handler_falls_back_to_last_writer_wins_and_is_reported() {
    use crdt_core::{Collection, ConflictPolicy, Field, Schema};
    let schema = Schema::new(1)
        .collection(Collection::new("notes").field(Field::string("text").policy(
            ConflictPolicy::merge(|values: &[&Value]| {
                if values.len() > 2 {
                    panic!("three is a crowd");
                }
                Value::Int(values.len() as i64) // wrong type: the field is a string
            }),
        )))
        .unwrap();
    let clock = ManualClock::new(START_MS);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut open = || {
        Replica::open(
            MemoryStorage::new(),
            clock.clone(),
            schema.clone(),
            &mut rng,
        )
        .unwrap()
    };
    let (mut a, mut b, mut c) = (open(), open(), open());
    a.insert("notes", Some("n"), [("text", "base".into())])
        .unwrap();
    let base = a.ops_since(&VersionVector::new()).unwrap();
    b.apply_remote(base.clone()).unwrap();
    c.apply_remote(base).unwrap();
    a.set("notes", "n", "text", "a").unwrap();
    b.set("notes", "n", "text", "b").unwrap();
    let (wa, wb) = (last_op(&a), last_op(&b));
    let ops_a = a.ops_since(&VersionVector::new()).unwrap();
    let ops_b = b.ops_since(&VersionVector::new()).unwrap();
    c.apply_remote(ops_a.clone()).unwrap();
    c.apply_remote(ops_b.clone()).unwrap();
    let last = |r: &Replica<MemoryStorage, ManualClock>| {
        r.get("notes", "n").unwrap().unwrap().get("text").cloned()
    };
    let winner = if wa > wb { "a" } else { "b" };
    assert_eq!(
        last(&c),
        Some(winner.into()),
        "wrong-type result falls back to LWW"
    );
    let mut reports = Vec::new();
    while let Some(e) = c.poll_event() {
        if let Event::Report(Report::MergeFailed { reason, .. }) = e {
            reports.push(reason);
        }
    }
    assert!(reports.iter().any(|r| r.contains("integer")), "{reports:?}");

    // A write that saw both siblings replaces them; the handler is no longer needed.
    c.set("notes", "n", "text", "c").unwrap();
    assert_eq!(last(&c), Some("c".into()));
    assert!(c.conflicts("notes").unwrap().is_empty());
    // Three concurrent siblings make the handler panic: last-writer-wins, reported.
    let mut f = open();
    f.apply_remote(ops_a[..1].to_vec()).unwrap();
    f.set("notes", "n", "text", "f").unwrap();
    let wf = last_op(&f);
    let mut g = open();
    g.apply_remote(ops_a).unwrap();
    g.apply_remote(ops_b).unwrap();
    while g.poll_event().is_some() {}
    g.apply_remote(f.ops_since(&VersionVector::new()).unwrap())
        .unwrap();
    let winner = [(wa, "a"), (wb, "b"), (wf, "f")]
        .into_iter()
        .max()
        .unwrap()
        .1;
    assert_eq!(last(&g), Some(winner.into()));
    let reasons: Vec<String> = std::iter::from_fn(|| g.poll_event())
        .filter_map(|ev| match ev {
            Event::Report(Report::MergeFailed { reason, field, .. }) if field == "text" => {
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("three is a crowd")),
        "{reasons:?}"
    );
    // The replica is still usable: a write that saw all three replaces them.
    g.set("notes", "n", "text", "g").unwrap();
    assert_eq!(last(&g), Some("g".into()));
    assert!(g.conflicts("notes").unwrap().is_empty());
}

#[test]
fn counters_and_sets_merge_concurrent_changes() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    user(&mut a, "u", "Ann");
    a.transact(|tx| tx.add("users", "u", "tags", "old"))
        .unwrap();
    sync(&a, &mut b);
    a.transact(|tx| {
        tx.increment("users", "u", "karma", 10)?;
        tx.increment("users", "u", "karma", -3)?;
        tx.remove("users", "u", "tags", "old")
    })
    .unwrap();
    b.transact(|tx| {
        tx.increment("users", "u", "karma", 5)?;
        tx.add("users", "u", "tags", "old")?; // concurrent re-add wins over a's remove
        tx.add("users", "u", "tags", "new")
    })
    .unwrap();
    sync(&a, &mut b);
    sync(&b, &mut a);
    assert_eq!(snapshot(&a), snapshot(&b));
    let row = a.get("users", "u").unwrap().unwrap();
    assert_eq!(row.counter("karma"), Some(12));
    assert_eq!(
        row.set("tags"),
        Some(&[Value::from("new"), Value::from("old")][..])
    );
    // A remove that saw every add removes the element everywhere.
    a.transact(|tx| tx.remove("users", "u", "tags", "old"))
        .unwrap();
    sync(&a, &mut b);
    assert_eq!(
        b.get("users", "u").unwrap().unwrap().set("tags"),
        Some(&[Value::from("new")][..])
    );
}

#[test]
fn delete_hides_what_it_saw_and_a_concurrent_later_write_revives() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    user(&mut a, "u", "Ann");
    a.transact(|tx| {
        tx.increment("users", "u", "karma", 7)?;
        tx.add("users", "u", "tags", "t")
    })
    .unwrap();
    sync(&a, &mut b);
    a.transact(|tx| tx.delete("users", "u")).unwrap();
    assert_eq!(a.get("users", "u").unwrap(), None);
    assert!(matches!(
        a.set("users", "u", "age", 3),
        Err(WriteError::NoSuchRecord { .. })
    ));
    clock.advance(1);
    b.transact(|tx| tx.increment("users", "u", "karma", 1))
        .unwrap(); // after the delete
    sync(&a, &mut b);
    sync(&b, &mut a);
    assert_eq!(snapshot(&a), snapshot(&b));
    let row = a
        .get("users", "u")
        .unwrap()
        .expect("revived by the later write");
    assert_eq!(
        row.counter("karma"),
        Some(1),
        "counts before the delete are reset"
    );
    assert_eq!(
        row.get("name"),
        Some(&Value::Null),
        "fields written before the delete are gone"
    );
    assert_eq!(row.set("tags"), Some(&[][..]));
    // Re-inserting a deleted key works.
    a.transact(|tx| tx.delete("users", "u")).unwrap();
    user(&mut a, "u", "Again");
    assert_eq!(
        a.get("users", "u").unwrap().unwrap().get("name"),
        Some(&"Again".into())
    );
}

#[test]
fn queries_filter_order_and_limit() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    for (k, name, age) in [
        ("a", "Ann", 30),
        ("b", "Bob", 25),
        ("c", "Cid", 35),
        ("d", "Dee", 25),
    ] {
        r.insert(
            "users",
            Some(k),
            [("name", name.into()), ("age", age.into())],
        )
        .unwrap();
    }
    r.transact(|tx| tx.add("users", "c", "tags", "admin"))
        .unwrap();
    let q = Query::new("users")
        .filter("age", Cmp::Ge, 25)
        .order_by("age", Order::Desc)
        .limit(3);
    let keys: Vec<_> = r
        .query(&q)
        .unwrap()
        .into_iter()
        .map(|row| row.key)
        .collect();
    assert_eq!(keys, ["c", "a", "b"], "ties ordered by key");
    let admins = r
        .query(&Query::new("users").filter("tags", Cmp::Contains, "admin"))
        .unwrap();
    assert_eq!(admins.len(), 1);
    let named = r
        .query(&Query::new("users").filter("name", Cmp::Contains, "e"))
        .unwrap();
    assert_eq!(named.len(), 1);
    assert!(
        r.query(&Query::new("users").filter("nope", Cmp::Eq, 1))
            .is_err()
    );
    assert!(r.query(&Query::new("nope")).is_err());
}

#[test]
fn live_queries_fire_only_when_their_result_changes() {
    let clock = ManualClock::new(START_MS);
    let (mut a, mut b) = (replica(&clock, 1), replica(&clock, 2));
    user(&mut a, "a", "Ann");
    let (adults, rows) = a
        .subscribe(Query::new("users").filter("age", Cmp::Ge, 18))
        .unwrap();
    assert!(rows.is_empty());
    let (teams, _) = a.subscribe(Query::new("teams")).unwrap();
    a.set("users", "a", "age", 10).unwrap(); // still not an adult: no event
    assert_eq!(a.poll_event(), None);
    a.set("users", "a", "age", 20).unwrap();
    match a.poll_event() {
        Some(Event::QueryChanged { id, rows }) => {
            assert_eq!(id, adults);
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].fields["age"], FieldValue::Value(20.into()));
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert_eq!(a.poll_event(), None, "the teams query was not affected");
    a.set("users", "a", "age", 20).unwrap(); // same value: result unchanged
    assert_eq!(a.poll_event(), None);
    // A remote change fires it too.
    sync(&a, &mut b);
    b.set("users", "a", "name", "Anne").unwrap();
    sync(&b, &mut a);
    assert!(matches!(a.poll_event(), Some(Event::QueryChanged { id, .. }) if id == adults));
    assert!(a.unsubscribe(teams));
}

fn op(replica: u64, ms: u64, deps: Vec<OpId>, field: &str, payload: Payload) -> Op {
    Op {
        id: OpId::new(
            Timestamp::new(ms, 0).unwrap(),
            crdt_core::ReplicaId::new(replica),
        ),
        schema_version: 1,
        collection: "users".into(),
        key: "u".into(),
        field: field.into(),
        deps,
        payload,
    }
}

#[test]
fn remote_ops_are_idempotent_drift_checked_and_causally_buffered() {
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    let create = op(
        7,
        START_MS - 10,
        vec![],
        "name",
        Payload::Write("Ann".into()),
    );
    let bio1 = op(7, START_MS - 9, vec![], "bio", Payload::Write("one".into()));
    let bio2 = op(
        8,
        START_MS - 8,
        vec![bio1.id],
        "bio",
        Payload::Write("two".into()),
    );

    // bio2 depends on bio1, which has not arrived: it waits.
    let out = r.apply_remote([create.clone(), bio2.clone()]).unwrap();
    assert_eq!(out.applied, vec![create.id]);
    assert_eq!(out.buffered, 1);
    assert_eq!(r.buffered(), 1);
    assert!(!r.storage().contains(bio2.id).unwrap(), "not stored");
    assert!(
        r.ops_since(&VersionVector::new())
            .unwrap()
            .iter()
            .all(|o| o.id != bio2.id),
        "not forwarded"
    );
    assert_eq!(
        r.get("users", "u").unwrap().unwrap().get("bio"),
        Some(&Value::Null)
    );

    // Duplicates (stored or buffered) are ignored.
    let out = r.apply_remote([create.clone(), bio2.clone()]).unwrap();
    assert_eq!(out.duplicates, 2);
    assert!(out.applied.is_empty());

    // The dependency arrives and releases it.
    let out = r.apply_remote([bio1.clone()]).unwrap();
    assert_eq!(out.applied, vec![bio1.id, bio2.id]);
    assert_eq!(r.buffered(), 0);
    assert_eq!(
        r.get("users", "u").unwrap().unwrap().get("bio"),
        Some(&"two".into())
    );
    assert!(
        r.conflicts("users").unwrap().is_empty(),
        "bio2 had seen bio1"
    );

    // A timestamp beyond the drift limit is rejected and does not move the clock.
    let before = r.clock().last();
    let future = op(
        9,
        START_MS + 60_001,
        vec![],
        "name",
        Payload::Write("Eve".into()),
    );
    let out = r.apply_remote([future.clone()]).unwrap();
    assert!(matches!(out.rejected.as_slice(), [(id, RejectReason::Drift(_))] if *id == future.id));
    assert_eq!(r.clock().last(), before);
    assert!(!r.storage().contains(future.id).unwrap());

    // Ops that do not fit the schema are rejected with the field named.
    let bad = op(9, START_MS, vec![], "age", Payload::Write("old".into()));
    let out = r.apply_remote([bad]).unwrap();
    assert!(
        matches!(&out.rejected[0].1, RejectReason::Invalid(InvalidOp::Type { field, .. }) if field == "age")
    );

    // Accepted remote time moves the clock past it.
    let near = op(
        9,
        START_MS + 30_000,
        vec![],
        "age",
        Payload::Write(5.into()),
    );
    r.apply_remote([near.clone()]).unwrap();
    r.set("users", "u", "age", 6).unwrap();
    assert!(r.version_vector().get(r.id()).unwrap() > near.id.ts);
}

#[test]
fn reopening_hydrates_the_same_state_and_resumes_the_clock() {
    let clock = ManualClock::new(START_MS);
    let mut a = replica(&clock, 1);
    user(&mut a, "u", "Ann");
    a.transact(|tx| {
        tx.increment("users", "u", "karma", 4)?;
        tx.add("users", "u", "tags", "x")?;
        tx.set("users", "u", "email", "a@example.com")
    })
    .unwrap();
    let highest = a.version_vector().max_timestamp().unwrap();
    let before = snapshot(&a);
    let id = a.id();
    let storage: MemoryStorage = a.storage().clone();
    clock.set(START_MS - 3_600_000); // the system clock went back an hour while closed
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut b = Replica::open(storage, clock.clone(), schema(), &mut rng).unwrap();
    assert_eq!(b.id(), id, "the replica id is kept");
    assert_eq!(snapshot(&b), before);
    b.set("users", "u", "age", 1).unwrap();
    assert!(
        b.version_vector().get(id).unwrap() > highest,
        "no timestamp reissued"
    );
}

#[test]
fn reopening_resumes_above_the_stored_high_water_mark_and_keeps_peer_frontiers() {
    let clock = ManualClock::new(START_MS);
    let mut a = replica(&clock, 1);
    user(&mut a, "u", "Ann");
    let mut storage: MemoryStorage = a.storage().clone();
    // A timestamp above everything in the log was issued or observed before the restart.
    let mark = Timestamp::new(START_MS + 5_000, 3).unwrap();
    storage.set_high_water(mark).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut b = Replica::open(storage, clock.clone(), schema(), &mut rng).unwrap();
    b.set("users", "u", "age", 2).unwrap();
    assert!(b.version_vector().get(b.id()).unwrap() > mark);

    let peer = crdt_core::ReplicaId::new(42);
    assert_eq!(b.peer_frontier(peer).unwrap(), None);
    let vv = b.version_vector().clone();
    b.save_peer_frontier(peer, &vv).unwrap();
    assert_eq!(b.peer_frontier(peer).unwrap(), Some(vv));
}

#[test]
fn a_snapshot_that_does_not_fit_is_ignored_and_the_log_replayed() {
    use crdt_core::{Collection, Field, Schema, Snapshot};
    let clock = ManualClock::new(START_MS);
    let mut a = replica(&clock, 1);
    user(&mut a, "u", "Ann");
    a.save_snapshot().unwrap();
    a.set("users", "u", "age", 7).unwrap();
    let expected = snapshot(&a);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);

    // From the snapshot plus the op after it.
    let from_snapshot =
        Replica::open(a.storage().clone(), clock.clone(), schema(), &mut rng).unwrap();
    assert_eq!(snapshot(&from_snapshot), expected);

    // Corrupt snapshot bytes: ignored, the log is replayed.
    let mut storage: MemoryStorage = a.storage().clone();
    let mut bad = storage.snapshot().unwrap().unwrap();
    bad.bytes.truncate(bad.bytes.len() / 2);
    storage.save_snapshot(&bad).unwrap();
    let replayed = Replica::open(storage.clone(), clock.clone(), schema(), &mut rng).unwrap();
    assert_eq!(snapshot(&replayed), expected);
    storage
        .save_snapshot(&Snapshot {
            position: 0,
            bytes: vec![9, 9, 9],
        })
        .unwrap();
    let replayed = Replica::open(storage, clock.clone(), schema(), &mut rng).unwrap();
    assert_eq!(snapshot(&replayed), expected);

    // A schema with another field layout: the snapshot's positions would be wrong; replay.
    let wider = schema()
        .collection(Collection::new("extra").field(Field::string("x")))
        .unwrap();
    let replayed = Replica::open(a.storage().clone(), clock.clone(), wider, &mut rng).unwrap();
    assert_eq!(
        replayed.get("users", "u").unwrap().unwrap().get("age"),
        Some(&Value::Int(7))
    );
    let narrower = Schema::new(1)
        .collection(
            Collection::new("users").field(Field::string("name")), // no "age"
        )
        .unwrap();
    assert!(
        Replica::open(a.storage().clone(), clock.clone(), narrower, &mut rng).is_err(),
        "ops for fields the schema lacks are an error at open, never silently dropped"
    );
}

/// A write whose op would encode to more than `MAX_OP_BYTES` could be neither read back nor
/// sent: it is refused before it is stored, from a local write and from a peer, and nothing
/// else changes. One at exactly the limit is taken.
#[test]
fn an_op_larger_than_the_codec_reads_back_is_refused_before_it_is_stored() {
    use crdt_core::codec::{MAX_OP_BYTES, encoded_len};
    let clock = ManualClock::new(START_MS);
    let mut r = replica(&clock, 1);
    r.insert("notes", Some("n"), [("title", "t".into())])
        .unwrap();
    r.transact(|tx| tx.insert_text("notes", "n", "body", 0, "hi"))
        .unwrap();
    // Measure the encoding of a large write, then aim at the limit (the string's length prefix
    // is 4 bytes long from here to there, and so is every other varint of the op).
    let near = MAX_OP_BYTES - 1_000;
    r.set("notes", "n", "title", "x".repeat(near)).unwrap();
    let measured = encoded_len(&r.storage().get(last_op(&r)).unwrap().unwrap());
    let at_limit = near + (MAX_OP_BYTES - measured);
    let before = (r.storage().len().unwrap(), snapshot(&r));

    let err = r
        .set("notes", "n", "title", "y".repeat(at_limit + 1))
        .unwrap_err();
    assert!(
        matches!(err, WriteError::Invalid(InvalidOp::TooLarge { bytes, .. }) if bytes == MAX_OP_BYTES + 1),
        "{err}"
    );
    assert!(err.to_string().contains("limit of one op"), "{err}");
    // Refused whole, and nothing of the transaction kept.
    let refused = |r: &Mem, result: Result<(), WriteError>| {
        let err = result.unwrap_err();
        assert!(
            matches!(err, WriteError::Invalid(InvalidOp::TooLarge { .. })),
            "{err}"
        );
        assert_eq!((r.storage().len().unwrap(), snapshot(r)), before);
    };
    let result =
        r.transact(|tx| tx.insert_text("notes", "n", "body", 1, &"z".repeat(MAX_OP_BYTES)));
    refused(&r, result);
    // A closure that catches the refusal and goes on cannot keep the edit's changes without
    // its op: the whole transaction fails with that error.
    let result = r.transact(|tx| {
        let err = tx.insert_text("notes", "n", "body", 1, &"z".repeat(MAX_OP_BYTES));
        assert!(matches!(
            err,
            Err(WriteError::Invalid(InvalidOp::TooLarge { .. }))
        ));
        tx.insert_text("notes", "n", "body", 1, "small")
    });
    refused(&r, result);
    assert_eq!(r.text("notes", "n", "body").unwrap(), "hi");

    r.set("notes", "n", "title", "y".repeat(at_limit)).unwrap();
    let op = r.storage().get(last_op(&r)).unwrap().unwrap();
    assert_eq!(encoded_len(&op), MAX_OP_BYTES);

    // The same from a peer: an op one byte over is rejected, not stored; its batch goes on.
    let mut b = replica(&clock, 2);
    let mut ops = r.ops_since(&VersionVector::new()).unwrap();
    let mut over = ops.pop().unwrap();
    let Payload::Write(Value::String(s)) = &mut over.payload else {
        unreachable!("the title write")
    };
    s.push('y');
    let outcome = b.apply_remote(ops.clone()).unwrap();
    assert_eq!(outcome.applied.len(), ops.len());
    let outcome = b.apply_remote(vec![over.clone()]).unwrap();
    assert!(
        matches!(&outcome.rejected[..], [(id, RejectReason::Invalid(InvalidOp::TooLarge { bytes, .. }))]
            if *id == over.id && *bytes == MAX_OP_BYTES + 1),
        "{outcome:?}"
    );
    assert!(!b.storage().contains(over.id).unwrap());
}
