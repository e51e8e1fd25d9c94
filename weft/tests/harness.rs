//! `weft::testing` catches broken merge handlers, shrinks what it finds, and passes good ones.

use std::sync::atomic::{AtomicI64, Ordering};

use weft::testing::{Config, Failure, Harness, Step};
use weft::{Collection, ConflictPolicy, Field, ScalarType, Schema, Value};

/// A schema with one merge field and, around it, every other field kind.
fn schema(handler: ConflictPolicy) -> Schema {
    Schema::new(1)
        .collection(
            Collection::new("lots")
                .field(Field::string("title").required())
                .field(Field::int("bid").policy(handler))
                .field(Field::counter("watchers"))
                .field(Field::set("tags", ScalarType::String))
                .field(Field::text("notes"))
                .field(Field::list("history", ScalarType::Int)),
        )
        .expect("a valid schema")
}

fn bids(g: &mut weft::testing::Gen) -> Value {
    if g.chance(1, 5) {
        Value::Null // the bid is withdrawn
    } else {
        Value::Int(g.int(1, 50))
    }
}

fn harness(handler: ConflictPolicy, config: Config) -> Harness {
    Harness::new(schema(handler))
        .values("lots", "bid", bids)
        .values("lots", "title", |g| Value::String(g.string("ab", 2)))
        .config(config)
}

#[test]
fn a_deterministic_handler_passes() {
    let max = ConflictPolicy::merge(|s| s.iter().copied().max().cloned().unwrap_or(Value::Null));
    let stats = harness(max, Config::default().seed(1).histories(40))
        .run()
        .unwrap_or_else(|cx| panic!("{cx}"));
    assert_eq!(stats.histories, 40);
    assert!(stats.merges_checked > 0, "{stats:?}");
    assert!(stats.ops > 0 && stats.deliveries > 0, "{stats:?}");
}

#[test]
fn a_handler_that_keeps_the_first_sibling_passes_because_siblings_come_in_op_id_order() {
    let first = ConflictPolicy::merge(|s| s[0].clone());
    harness(first, Config::default().seed(2).histories(40))
        .run()
        .unwrap_or_else(|cx| panic!("{cx}"));
}

#[test]
fn a_panicking_handler_is_caught_and_shrunk() {
    // Sums the bids, assuming every sibling is a number: a withdrawn bid (Null) panics.
    let sum =
        ConflictPolicy::merge(|s| Value::Int(s.iter().map(|v| v.as_int().expect("a bid")).sum()));
    let cx = harness(sum, Config::default().seed(3).histories(200))
        .run()
        .expect_err("the handler panics on a withdrawn bid");
    let text = cx.to_string();
    assert!(
        matches!(&cx.failure, Failure::HandlerFailed { field, reason, .. }
            if field == "bid" && reason.contains("a bid")),
        "{text}"
    );
    // Two concurrent writes suffice (the heal delivers them): the shrunk history is tiny.
    assert!(cx.steps.len() <= 3, "not shrunk: {text}");
    assert!(cx.steps.len() < cx.original_steps, "{text}");
    assert!(text.contains(&format!("seed {}", cx.seed)), "{text}");
    assert!(text.contains("the network heals"), "{text}");
    // The counterexample replays, and still fails the same way.
    let replay = harness(sum_again(), Config::default()).check(cx.seed, &cx.steps);
    assert!(
        matches!(replay, Err(Failure::HandlerFailed { .. })),
        "{replay:?}"
    );
}

fn sum_again() -> ConflictPolicy {
    ConflictPolicy::merge(|s| Value::Int(s.iter().map(|v| v.as_int().expect("a bid")).sum()))
}

static CALLS: AtomicI64 = AtomicI64::new(0);

#[test]
fn a_handler_that_reads_global_state_is_caught() {
    let flaky = ConflictPolicy::merge(|s| {
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        s.iter()
            .copied()
            .max()
            .cloned()
            .map_or(Value::Int(n % 2), |v| {
                Value::Int(v.as_int().unwrap_or(0) + n % 2)
            })
    });
    let cx = harness(flaky, Config::default().seed(4).histories(200))
        .run()
        .expect_err("the handler is not deterministic");
    assert!(
        matches!(
            cx.failure,
            Failure::NotDeterministic { .. } | Failure::Diverged(_)
        ),
        "{cx}"
    );
    assert!(cx.steps.len() <= 4, "not shrunk: {cx}");
}

#[test]
fn a_handler_of_the_wrong_type_is_caught() {
    let wrong = ConflictPolicy::merge(|_| Value::String("oops".into()));
    let cx = harness(wrong, Config::default().seed(5).histories(200))
        .run()
        .expect_err("the handler returns a string for an integer field");
    assert!(
        matches!(&cx.failure, Failure::HandlerFailed { reason, .. } if reason.contains("string")),
        "{cx}"
    );
}

#[test]
fn a_seed_replays_the_same_history() {
    let h = harness(ConflictPolicy::Manual, Config::default().seed(6));
    assert_eq!(h.history(6), h.history(6));
    assert_ne!(h.history(6), h.history(7));
    let a = h.check(6, &h.history(6));
    let b = h.check(6, &h.history(6));
    assert_eq!(a, b);
    assert!(a.is_ok(), "{a:?}");
}

#[test]
fn steps_naming_missing_replicas_do_nothing() {
    let h = harness(ConflictPolicy::Manual, Config::default().replicas(2));
    let steps = [
        Step::write(7, 1),
        Step::deliver(0, 9, 2),
        Step::deliver(1, 1, 3),
        Step::tick(5, 10),
    ];
    let stats = h.check(0, &steps).expect("nothing happens");
    assert_eq!(stats.writes, 0);
    assert_eq!(stats.deliveries, 0);
}

/// Many more histories of the schema with every field kind: `cargo test -p weft --test
/// harness -- --ignored`.
#[test]
#[ignore = "slow in a debug build: many histories"]
fn many_histories_converge() {
    let max = ConflictPolicy::merge(|s| s.iter().copied().max().cloned().unwrap_or(Value::Null));
    let stats = harness(
        max,
        Config::default()
            .seed(1_000)
            .histories(5_000)
            .replicas(5)
            .steps(60),
    )
    .run()
    .unwrap_or_else(|cx| panic!("{cx}"));
    println!("{stats:?}");
}
