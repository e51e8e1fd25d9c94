//! Checking an application's merge handler with `weft::testing`.
//!
//! A shopping list keeps, per item, the quantity wanted. Two devices that change it
//! concurrently leave siblings, and the application merges them with a handler. The first
//! handler below assumes every sibling is a number, but a device may clear the quantity
//! (write `Null`): the harness finds the history in which the handler panics, shrinks it to
//! the few steps that matter, and prints it. The fixed handler then passes.
//!
//! Run with `cargo run -p examples --example merge_check`.

use weft::testing::{Config, Harness};
use weft::{Collection, ConflictPolicy, Field, ScalarType, Schema, Value};

fn schema(quantity: ConflictPolicy) -> Result<Schema, weft::crdt_core::SchemaError> {
    Schema::new(1).collection(
        Collection::new("items")
            .field(Field::string("name").required())
            .field(Field::int("quantity").policy(quantity))
            .field(Field::set("shops", ScalarType::String))
            .field(Field::text("note")),
    )
}

fn check(quantity: ConflictPolicy) -> Result<(), Box<dyn std::error::Error>> {
    let stats = Harness::new(schema(quantity)?)
        .values("items", "name", |g| Value::String(g.string("ab", 2)))
        .values("items", "quantity", |g| {
            // Mostly small quantities, sometimes cleared.
            if g.chance(1, 6) {
                Value::Null
            } else {
                Value::Int(g.int(1, 12))
            }
        })
        .config(Config::default().seed(1).histories(200))
        .run()?;
    println!(
        "passed: {} histories, {} ops, {} merges checked",
        stats.histories, stats.ops, stats.merges_checked
    );
    Ok(())
}

fn main() {
    // Broken: "take the largest quantity" unwraps every sibling.
    let broken = ConflictPolicy::merge(|siblings| {
        Value::Int(
            siblings
                .iter()
                .map(|v| v.as_int().expect("a quantity"))
                .max()
                .unwrap_or(0),
        )
    });
    println!("checking the broken handler:");
    match check(broken) {
        Ok(()) => println!("unexpectedly passed"),
        Err(counterexample) => println!("{counterexample}\n"),
    }

    // Fixed: a cleared quantity counts as no opinion.
    let fixed = ConflictPolicy::merge(|siblings| {
        siblings
            .iter()
            .filter_map(|v| v.as_int())
            .max()
            .map_or(Value::Null, Value::Int)
    });
    println!("checking the fixed handler:");
    if let Err(e) = check(fixed) {
        println!("{e}");
        std::process::exit(1);
    }
}
