//! A store file from untrusted bytes: opening it, reading everything in it and opening a
//! replica on it never panic. The input is either the whole file, or patches (offset, xor)
//! applied to a valid store holding ops of every kind, a snapshot and a peer frontier, so
//! that the fuzzer gets past redb's checksums; or the valid store with the input as its commit
//! log. The log is small (4 KiB), so that its scan for damage on open stays cheap under the
//! fuzzer's instrumentation.
//!
//! `RedbStorage` catches a panic of redb while it opens a file (and reports the file
//! unreadable), so a panic there is tolerated; a panic anywhere else aborts, as in every
//! target.
#![no_main]

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::{Once, OnceLock};

use crdt_core::{RedbConfig, RedbStorage, ReplicaId, Storage, StorageError, VersionVector};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Memory-backed where there is one: the store fsyncs, and a disk would set the pace.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("weft-fuzz-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        dir
    })
}

/// The bytes of a valid store.
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = dir().join("template.redb");
        let _ = std::fs::remove_file(&path);
        {
            let store = RedbStorage::open(&path).expect("a new store");
            let mut r = common::replica_on(store, 3).expect("a new store opens");
            r.transact(|tx| {
                tx.insert("c", Some("a"), [("s", "x".into()), ("n", 3.into())])?;
                tx.increment("c", "a", "votes", 2)?;
                tx.add("c", "a", "tags", "t")?;
                tx.insert_text("c", "a", "body", 0, "hello")?;
                tx.insert_list("c", "a", "items", 0, vec![1.into(), 2.into()])?;
                tx.insert("g", None, [("x", true.into())])?;
                Ok(())
            })
            .expect("the template writes");
            r.save_snapshot().expect("a snapshot");
            r.transact(|tx| {
                tx.delete_text("c", "a", "body", 1, 2)?;
                tx.set("c", "a", "m", 5)
            })
            .expect("the template writes");
            let vv = r.version_vector().clone();
            r.save_peer_frontier(ReplicaId::new(9), &vv)
                .expect("a frontier");
        }
        let bytes = std::fs::read(&path).expect("the template reads back");
        eprintln!("storage_open: a template store of {} bytes", bytes.len());
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(dir().join("template.redb-log"));
        bytes
    })
}

thread_local! {
    static OPENING: Cell<bool> = const { Cell::new(false) };
}

/// Wraps libFuzzer's panic hook (which aborts) so that panics inside an open pass.
fn tolerate_panics_while_opening() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !OPENING.with(Cell::get) {
                abort(info);
            }
        }));
    });
}

fn open(path: &std::path::Path, config: RedbConfig) -> Result<RedbStorage, StorageError> {
    OPENING.with(|o| o.set(true));
    let store = RedbStorage::open_with(path, config);
    OPENING.with(|o| o.set(false));
    store
}

fuzz_target!(|data: &[u8]| {
    tolerate_panics_while_opening();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let log_path = dir().join("input.redb-log");
    let _ = std::fs::remove_file(&log_path);
    let bytes = if mode & 3 == 2 {
        std::fs::write(&log_path, rest).expect("the input log writes");
        template().to_vec()
    } else if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut bytes = template().to_vec();
        for patch in rest.chunks_exact(5) {
            let at = u32::from_le_bytes([patch[0], patch[1], patch[2], patch[3]]) as usize;
            let at = at % bytes.len();
            bytes[at] ^= patch[4].max(1);
        }
        bytes
    };
    let path = dir().join("input.redb");
    std::fs::write(&path, &bytes).expect("the input file writes");
    // Verification on (the default): with it off a damaged file is trusted, by contract.
    let config = RedbConfig::new().log_bytes(4 << 10);
    if let Ok(store) = open(&path, config) {
        let _ = store.replica_id();
        let _ = store.len();
        let _ = store.high_water();
        let _ = store.snapshot();
        let _ = store.append_position();
        let _ = store.peer_frontier(ReplicaId::new(9));
        for op in store.scan().flatten() {
            let _ = store.get(op.id);
            let _ = store.contains(op.id);
        }
        let _ = store.ops_after(&VersionVector::new()).count();
        let _ = store.ops_appended_after(0).count();
        let _ = store.ops_appended_after(1).count();
        if let Ok(r) = common::replica_on(store, 4) {
            let _ = common::state(&r);
        }
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&log_path);
});
