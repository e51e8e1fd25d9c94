//! Durable storage: commits per second of weft's redb store against SQLite (WAL,
//! `synchronous=FULL`, a `WITHOUT ROWID` table keyed like ours) on the same ops in the same run,
//! with one op per commit, batches of 100 and of 10,000, and eight threads committing one op at
//! a time; then the time to open a store of 1,000,000 ops, and to read its ops' stored bytes
//! for sync one by one and in a batch (`Storage::get_encoded_each`). The two systems take
//! turns in rounds so that both see the same machine load.
//!
//! `cargo bench -p benches --bench storage [-- --ops N --dir PATH --long]`. With `--test`
//! (cargo's smoke mode) every size shrinks. `--long` runs 2,000 single-op and 1,000 100-op
//! commits in 20 rounds: past SQLite's first WAL growth, where it commits faster than in the
//! default run. Files go to `--dir` (default: the system temp dir), which
//! should be on the disk you care about: on tmpfs an fsync costs nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crdt_core::{
    Collection, Field, Op, OpId, Payload, RedbConfig, RedbStorage, Replica, ReplicaId, Schema,
    Storage, Value, codec,
};
use hlc::{ManualClock, Timestamp};
use rand::SeedableRng;

struct Args {
    test: bool,
    /// `--long`: four times the single-op and five times the 100-op commits, in 20 rounds,
    /// so that both stores reach their steady state (SQLite's WAL reused in place).
    long: bool,
    open_ops: u64,
    dir: PathBuf,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let mut parsed = Args {
        test,
        long: args.iter().any(|a| a == "--long"),
        open_ops: if test { 20_000 } else { 1_000_000 },
        dir: std::env::temp_dir(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ops" => {
                let v = it.next().expect("--ops needs a value");
                parsed.open_ops = v.replace('_', "").parse().expect("--ops is a number");
            }
            "--dir" => parsed.dir = PathBuf::from(it.next().expect("--dir needs a value")),
            _ => {}
        }
    }
    parsed
}

/// The collection the workload writes.
const COLLECTION: &str = "users";

/// The `i`th op of the workload: a register write to one of 100,000 records.
fn op(i: u64) -> Op {
    Op {
        id: OpId::new(
            Timestamp::from_u64((1_795_316_400_000 << 16) + i),
            ReplicaId::new(7),
        ),
        schema_version: 1,
        collection: "users".into(),
        key: format!("user-{}", i % 100_000),
        field: "name".into(),
        deps: Vec::new(),
        payload: Payload::Write(Value::String(format!("name number {i}"))),
    }
}

fn schema() -> Schema {
    Schema::new(1)
        .collection(Collection::new("users").field(Field::string("name")))
        .expect("valid schema")
}

#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> Self {
        let dir = root.join(format!("weft-bench-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn fresh(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        for suffix in ["", "-wal", "-shm", "-log"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("sqlite opens");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.busy_timeout(Duration::from_secs(60))
        .expect("busy timeout");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS ops (id BLOB PRIMARY KEY, op BLOB NOT NULL) WITHOUT ROWID",
    )
    .expect("table");
    conn
}

fn sqlite_commit(conn: &mut rusqlite::Connection, ops: &[Op]) {
    let tx = conn.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare_cached("INSERT OR IGNORE INTO ops (id, op) VALUES (?1, ?2)")
            .expect("prepare");
        for op in ops {
            insert
                .execute((op.id.to_bytes().as_slice(), codec::encode_op(op)))
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

struct Row {
    label: String,
    ops: u64,
    commits: u64,
    weft: Duration,
    sqlite: Duration,
}

fn commit_rows(args: &Args, scratch: &Scratch) -> Vec<Row> {
    let shapes: [(&str, u64, u64); 3] = if args.test {
        [
            ("1 op per commit", 1, 20),
            ("100 ops per commit", 100, 5),
            ("10,000 ops per commit", 10_000, 1),
        ]
    } else if args.long {
        [
            ("1 op per commit", 1, 2_000),
            ("100 ops per commit", 100, 1_000),
            ("10,000 ops per commit", 10_000, 20),
        ]
    } else {
        [
            ("1 op per commit", 1, 500),
            ("100 ops per commit", 100, 200),
            ("10,000 ops per commit", 10_000, 20),
        ]
    };
    // The machine may be shared: weft and SQLite take turns, in rounds, on the same stores,
    // so that both see the same load; each row sums its rounds.
    let rounds: u64 = if args.long { 20 } else { 4 };
    let mut rows = Vec::new();
    for (label, batch, commits) in shapes {
        let batches: Vec<Vec<Op>> = (0..commits)
            .map(|c| (c * batch..(c + 1) * batch).map(op).collect())
            .collect();
        let mut store = RedbStorage::open(scratch.fresh("commits.redb")).expect("redb opens");
        let mut conn = sqlite(&scratch.fresh("commits.sqlite"));
        let (mut weft, mut sqlite) = (Duration::ZERO, Duration::ZERO);
        let per_round = batches.len().div_ceil(rounds as usize);
        for round in batches.chunks(per_round) {
            weft += timed(|| {
                for b in round {
                    store.append(b).expect("append");
                }
            });
            sqlite += timed(|| {
                for b in round {
                    sqlite_commit(&mut conn, b);
                }
            });
        }
        drop(store);
        drop(conn);
        rows.push(Row {
            label: label.into(),
            ops: batch * commits,
            commits,
            weft,
            sqlite,
        });
    }
    rows.push(concurrent_row(args, scratch));
    rows
}

/// Eight threads, each committing one op at a time; weft and SQLite take turns in rounds.
fn concurrent_row(args: &Args, scratch: &Scratch) -> Row {
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 3;
    let each = if args.test { 6 } else { 150 };
    let store = RedbStorage::open(scratch.fresh("group.redb")).expect("redb opens");
    let path = scratch.fresh("group.sqlite");
    drop(sqlite(&path));
    let mut conns: Vec<rusqlite::Connection> = (0..THREADS).map(|_| sqlite(&path)).collect();
    let (mut weft, mut sqlite_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let ids = round * each / ROUNDS..(round + 1) * each / ROUNDS;
        weft += timed(|| {
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    let mut store = store.clone();
                    let ids = ids.clone();
                    s.spawn(move || {
                        for i in ids {
                            store.append(&[op(t * 1_000_000 + i)]).expect("append");
                        }
                    });
                }
            });
        });
        sqlite_time += timed(|| {
            std::thread::scope(|s| {
                for (t, conn) in (0..THREADS).zip(conns.iter_mut()) {
                    let ids = ids.clone();
                    s.spawn(move || {
                        for i in ids {
                            sqlite_commit(conn, &[op(t * 1_000_000 + i)]);
                        }
                    });
                }
            });
        });
    }
    let transactions = store.commits();
    Row {
        label: format!("8 threads, 1 op per commit ({transactions} weft txns)"),
        ops: THREADS * each,
        commits: THREADS * each,
        weft,
        sqlite: sqlite_time,
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn open_rows(args: &Args, scratch: &Scratch) {
    let n = args.open_ops;
    let path = scratch.fresh("open.redb");
    let tail = (n / 1_000).max(1);
    let append = |store: &mut RedbStorage, range: std::ops::Range<u64>| {
        let mut i = range.start;
        while i < range.end {
            let end = (i + 10_000).min(range.end);
            store
                .append(&(i..end).map(op).collect::<Vec<_>>())
                .expect("append");
            i = end;
        }
    };
    let write = timed(|| {
        let mut store = RedbStorage::open(&path).expect("redb opens");
        append(&mut store, 0..n - tail);
    });
    let open_replica = || {
        let store = RedbStorage::open(&path).expect("opens");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        Replica::open(
            store,
            ManualClock::new(1_795_316_400_000),
            schema(),
            &mut rng,
        )
        .expect("replica opens")
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "\nopening a store of {n} ops ({:.1} MB on disk, written in {:.2} s in batches of 10,000):\n",
        size as f64 / 1e6,
        write.as_secs_f64()
    );
    println!("| what | time |");
    println!("|---|---|");
    let row = |label: &str, d: Duration| println!("| {label} | {:.3} s |", d.as_secs_f64());

    let config = |verify| RedbConfig::new().verify_on_open(verify);
    row(
        "store open, checksums verified",
        timed(|| drop(RedbStorage::open_with(&path, config(true)).expect("opens"))),
    );
    row(
        "store open, unverified",
        timed(|| drop(RedbStorage::open_with(&path, config(false)).expect("opens"))),
    );
    let mut count = 0;
    row(
        &format!(
            "open + read and decode every op (raw log scan, {} ops)",
            n - tail
        ),
        timed(|| {
            let store = RedbStorage::open(&path).expect("opens");
            count = store
                .scan()
                .inspect(|op| assert!(op.is_ok(), "decodes"))
                .count();
        }),
    );
    assert_eq!(count as u64, n - tail);
    // What a sync session reads to fill its frames: every op's stored bytes in id order
    // (a peer that has nothing), and every 100th (scattered gaps).
    let store = RedbStorage::open(&path).expect("opens");
    let ids: Vec<OpId> = store.scan().map(|op| op.expect("decodes").id).collect();
    let sparse: Vec<OpId> = ids.iter().step_by(100).copied().collect();
    for (what, ids) in [("every op", &ids), ("every 100th op", &sparse)] {
        // The two take turns, twice, and the better time of each counts, so that neither is
        // the one that warms the page cache.
        let (mut single, mut batch) = (Duration::MAX, Duration::MAX);
        for _ in 0..2 {
            let mut one_by_one = 0;
            single = single.min(timed(|| {
                for &id in ids {
                    one_by_one += store.get_encoded(id).expect("reads").expect("stored").len();
                }
            }));
            let mut batched = 0;
            batch = batch.min(timed(|| {
                store
                    .get_encoded_each(&mut ids.iter().copied(), &mut |_, bytes| {
                        batched += bytes.expect("stored").len();
                        true
                    })
                    .expect("reads");
            }));
            assert_eq!(one_by_one, batched);
        }
        let per_op = |d: Duration| d.as_secs_f64() * 1e9 / ids.len() as f64;
        println!(
            "| stored bytes of {what} for sync ({} ops): one by one (get_encoded) {:.0} ns an op, in a batch (get_encoded_each) {:.0} ns an op | {:.3} s / {:.3} s |",
            ids.len(),
            per_op(single),
            per_op(batch),
            single.as_secs_f64(),
            batch.as_secs_f64()
        );
    }
    drop(store);
    let mut replica = None;
    row(
        &format!(
            "Replica::open, replaying every op (no snapshot, {} ops)",
            n - tail
        ),
        timed(|| replica = Some(open_replica())),
    );
    let mut replica = replica.expect("opened");
    let state = replica
        .query(&crdt_core::Query::new(COLLECTION))
        .expect("query");
    let snap_bytes = replica.snapshot().expect("snapshot").bytes.len();
    row(
        &format!("Replica::save_snapshot ({:.1} MB)", snap_bytes as f64 / 1e6),
        timed(|| replica.save_snapshot().expect("saves")),
    );
    drop(replica);
    let mut store = RedbStorage::open(&path).expect("opens");
    append(&mut store, n - tail..n);
    drop(store);
    let mut reopened = None;
    row(
        &format!("Replica::open from the snapshot + the {tail} ops after it ({n} ops)"),
        timed(|| reopened = Some(open_replica())),
    );
    let reopened = reopened.expect("opened");
    assert_eq!(reopened.storage().len().expect("len"), n);
    let after = reopened
        .query(&crdt_core::Query::new(COLLECTION))
        .expect("query");
    assert!(after.len() >= state.len(), "the snapshot kept every record");
    assert_eq!(
        after.len() as u64,
        n.min(100_000),
        "one record per key written"
    );
}

fn main() {
    let args = parse_args();
    let scratch = Scratch::new(&args.dir);
    println!(
        "durable commits: weft (redb + commit log, one fsync per commit, group commit) vs SQLite (WAL, synchronous=FULL)\n"
    );
    println!(
        "| workload | ops | weft commits/s | weft ops/s | SQLite commits/s | SQLite ops/s | weft / SQLite |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in commit_rows(&args, &scratch) {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x |",
            r.label,
            r.ops,
            per_sec(r.commits, r.weft),
            per_sec(r.ops, r.weft),
            per_sec(r.commits, r.sqlite),
            per_sec(r.ops, r.sqlite),
            r.sqlite.as_secs_f64() / r.weft.as_secs_f64(),
        );
    }
    open_rows(&args, &scratch);
}
