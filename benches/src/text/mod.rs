//! Editing traces replayed through weft and its peers: parsing ([`trace`]), the exchange plan
//! for concurrent traces ([`plan`]), the seam every system implements ([`replay`]), one adapter
//! per system, measuring ([`measure`]) and the report ([`report`]).
//!
//! `cargo run --release -p benches --bin trace -- FILE...` replays files through weft alone;
//! `cargo bench -p benches --bench text` runs every system on every trace in
//! `../shared/traces` ([`trace::traces_dir`]).
//!
//! Every system replays the same way: each txn of a trace is its own local transaction through
//! the system's public API, on the replica of the txn's agent, which first receives the updates
//! of the txns it lacks among the txn's transitive parents ([`plan::Plan`]); at the end every
//! replica receives what it lacks, and all must read the trace's end content.

pub mod automerge;
pub mod diamond;
pub mod loro;
pub mod measure;
pub mod naive;
pub mod plan;
pub mod replay;
pub mod report;
pub mod trace;
pub mod weft;
pub mod yrs;

use replay::{Replicated, TextSystem};

/// Every system the text benchmark compares, weft first (the ratios are about it).
pub fn systems() -> Vec<Box<dyn TextSystem>> {
    vec![
        Box::new(Replicated::<weft::Weft>::default()),
        Box::new(Replicated::<self::automerge::Automerge>::default()),
        Box::new(Replicated::<self::yrs::Yrs>::default()),
        Box::new(Replicated::<self::loro::Loro>::default()),
        Box::new(diamond::DiamondTypes::default()),
    ]
}
