//! `weft demo`: two replicas on the embedded store edit one document concurrently, sync
//! through merkle-sync sessions driven in-process, then reopen from disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rand::SeedableRng;
use rand::rngs::StdRng;
use weft::crdt_core::{RedbStorage, Storage};
use weft::merkle_sync::{Config, Event, Index, Scope, Session, StorageSource};
use weft::{
    Collection, ConflictPolicy, Field, Query, Replica, ScalarType, Schema, SystemClock, Value,
};

use super::{Outcome, out};

type Store = Replica<RedbStorage, SystemClock>;

/// One side: a replica on its own store file and the sync index kept beside its log.
struct Peer {
    name: &'static str,
    replica: Store,
    index: Index,
}

impl Peer {
    fn open(
        name: &'static str,
        path: &Path,
        seed: u64,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let store = RedbStorage::open(path)?;
        let replica = Replica::open(
            store,
            SystemClock,
            schema()?,
            &mut StdRng::seed_from_u64(seed),
        )?;
        let ops: Vec<_> = replica.storage().scan().collect::<Result<_, _>>()?;
        let index = Index::from_ops(ops.iter());
        Ok(Self {
            name,
            replica,
            index,
        })
    }

    /// A local transaction; its ops go into the index too.
    fn edit(
        &mut self,
        f: impl FnOnce(
            &mut weft::crdt_core::Transaction<'_, RedbStorage, SystemClock>,
        ) -> Result<(), weft::crdt_core::WriteError>,
    ) -> Result<usize, weft::crdt_core::WriteError> {
        let ops = self.replica.transact(|tx| {
            f(tx)?;
            Ok(tx.ops().to_vec())
        })?;
        for op in &ops {
            self.index.insert_op(op);
        }
        Ok(ops.len())
    }

    /// Types `text` at `pos`, one keystroke (one transaction) per character.
    fn type_text(&mut self, pos: u64, text: &str) -> Result<usize, weft::crdt_core::WriteError> {
        let mut ops = 0;
        for (i, c) in text.chars().enumerate() {
            ops += self.edit(|tx| {
                tx.insert_text("docs", "readme", "body", pos + i as u64, &c.to_string())
            })?;
        }
        Ok(ops)
    }

    fn state(&self) -> Result<String, Box<dyn std::error::Error>> {
        let rows = self.replica.query(&Query::new("docs"))?;
        let conflicts = self.replica.conflicts("docs")?;
        Ok(format!("{rows:?} {conflicts:?}"))
    }
}

/// The merge handler of `docs.summary`: every concurrent value, joined in op id order (the
/// same order on every replica).
fn join(values: &[&Value]) -> Value {
    let parts: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
    Value::String(parts.join(" & "))
}

fn schema() -> Result<Schema, weft::crdt_core::SchemaError> {
    Schema::new(1).collection(
        Collection::new("docs")
            .field(Field::string("title"))
            .field(Field::text("body"))
            .field(Field::counter("views"))
            .field(Field::set("tags", ScalarType::String))
            .field(Field::string("status"))
            .field(Field::string("summary").policy(ConflictPolicy::merge(join))),
    )
}

/// A fresh folder under the temp dir.
fn fresh_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let pid = std::process::id();
    for n in 0u32.. {
        let dir = base.join(format!("weft-demo-{pid}-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free folder name"))
}

/// What one sync did.
#[derive(Default)]
struct SyncStats {
    flights: u32,
    messages: u64,
    bytes: u64,
    ops: u64,
}

/// Syncs two peers through a pair of sessions, moving each side's messages across in turn
/// (one flight), until both sessions are synced.
fn sync(peers: &mut [Peer; 2]) -> Result<SyncStats, Box<dyn std::error::Error>> {
    let scope = Scope::new(["docs"]);
    let mut sessions =
        [0, 1].map(|i| Session::new(0, scope.clone(), Config::default(), &peers[i].index));
    let mut stats = SyncStats::default();
    let mut now = 0;
    while !(sessions[0].is_synced() && sessions[1].is_synced()) {
        now += 10;
        if now > 10_000 {
            return Err("the sessions did not settle".into());
        }
        for from in 0..2 {
            let to = 1 - from;
            let mut flight = Vec::new();
            let source = StorageSource(peers[from].replica.storage());
            while let Some(bytes) =
                sessions[from].poll_transmit(now, &peers[from].index, &source)?
            {
                flight.push(bytes);
            }
            if flight.is_empty() {
                continue;
            }
            stats.flights += 1;
            for bytes in flight {
                stats.messages += 1;
                stats.bytes += bytes.len() as u64;
                sessions[to].handle_message(now, &bytes, &peers[to].index)?;
                while let Some(event) = sessions[to].poll_event() {
                    if let Event::Ops(ops) = event {
                        stats.ops += ops.len() as u64;
                        let outcome = peers[to].replica.apply_remote(ops.to_ops()?)?;
                        let peer = &mut peers[to];
                        peer.index.insert_from(
                            &merkle_sync::StorageSource(peer.replica.storage()),
                            &outcome.applied,
                        )?;
                    }
                }
            }
        }
    }
    Ok(stats)
}

fn report(what: &str, s: &SyncStats) -> std::io::Result<()> {
    out!(
        "{what}: {} ops in {} messages, {} bytes, {} round trips ({} flights)",
        s.ops,
        s.messages,
        s.bytes,
        s.flights.div_ceil(2),
        s.flights
    );
    Ok(())
}

pub(crate) fn run(dir: Option<PathBuf>) -> Outcome {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => fresh_dir()?,
    };
    let paths = [dir.join("alice.redb"), dir.join("bob.redb")];
    out!(
        "weft demo: two replicas on the embedded store (redb) in {}",
        dir.display()
    );
    let mut peers = [
        Peer::open("alice", &paths[0], 1)?,
        Peer::open("bob", &paths[1], 2)?,
    ];
    if peers.iter().any(|p| !p.index.is_empty()) {
        out!("(the stores are not empty: continuing from what they hold)");
    }

    // A shared starting point.
    if peers[0].replica.get("docs", "readme")?.is_none() {
        peers[0].edit(|tx| {
            tx.insert("docs", Some("readme"), [("title", "Weft".into())])?;
            tx.insert_text("docs", "readme", "body", 0, "hello world")?;
            tx.add("docs", "readme", "tags", "draft")
        })?;
    }
    report("first sync", &sync(&mut peers)?)?;

    // Concurrent edits, each side offline from the other.
    let mut ops = [0usize; 2];
    let len = |p: &Peer| {
        p.replica
            .text("docs", "readme", "body")
            .map(|t| t.chars().count() as u64)
    };
    let end = len(&peers[0])?;
    ops[0] += peers[0].type_text(end, ", from alice")?;
    ops[1] += peers[1].type_text(0, "bob says: ")?;
    ops[0] += peers[0].edit(|tx| tx.increment("docs", "readme", "views", 3))?;
    ops[1] += peers[1].edit(|tx| tx.increment("docs", "readme", "views", 2))?;
    ops[0] += peers[0].edit(|tx| tx.add("docs", "readme", "tags", "sync"))?;
    ops[1] += peers[1].edit(|tx| {
        tx.add("docs", "readme", "tags", "crdt")?;
        tx.remove("docs", "readme", "tags", "draft")
    })?;
    ops[0] += peers[0].edit(|tx| tx.set("docs", "readme", "status", "in review"))?;
    ops[1] += peers[1].edit(|tx| tx.set("docs", "readme", "status", "published"))?;
    ops[0] += peers[0].edit(|tx| tx.set("docs", "readme", "summary", "fast"))?;
    ops[1] += peers[1].edit(|tx| tx.set("docs", "readme", "summary", "small"))?;
    out!(
        "concurrent edits: alice {} ops (typed \", from alice\" at the end, views +3, tag +sync, status, summary), \
         bob {} ops (typed \"bob says: \" at the start, views +2, tag +crdt -draft, status, summary)",
        ops[0],
        ops[1]
    );
    report("sync", &sync(&mut peers)?)?;

    let converged = peers[0].state()? == peers[1].state()?
        && peers[0].index.root(&Scope::new(["docs"])) == peers[1].index.root(&Scope::new(["docs"]));
    let show = |p: &Peer| -> Result<(), Box<dyn std::error::Error>> {
        let row = p
            .replica
            .get("docs", "readme")?
            .ok_or("the document is gone")?;
        let text = |f: &str| row.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
        let tags: Vec<&str> = row
            .set("tags")
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out!(
            "{:>5}: body    {:?}",
            p.name,
            p.replica.text("docs", "readme", "body")?
        );
        out!(
            "       views {}, tags {:?}, status {:?} (last writer wins), summary {:?} (merge handler)",
            row.counter("views").unwrap_or(0),
            tags,
            text("status"),
            text("summary")
        );
        Ok(())
    };
    show(&peers[0])?;
    if !converged {
        show(&peers[1])?;
        out!("NOT CONVERGED: alice and bob differ");
        return Ok(ExitCode::FAILURE);
    }
    out!(
        "converged: alice and bob hold identical state and the same Merkle root ({} ops)",
        peers[0].index.len()
    );

    // Close, reopen from disk.
    let before = [peers[0].state()?, peers[1].state()?];
    drop(peers);
    let reopened = [
        Peer::open("alice", &paths[0], 1)?,
        Peer::open("bob", &paths[1], 2)?,
    ];
    let survived = reopened[0].state()? == before[0] && reopened[1].state()? == before[1];
    if !survived {
        out!("NOT DURABLE: the state read back from disk differs");
        return Ok(ExitCode::FAILURE);
    }
    out!(
        "closed and reopened from disk: {} + {} ops, the same state on both",
        reopened[0].index.len(),
        reopened[1].index.len()
    );
    Ok(ExitCode::SUCCESS)
}
