//! Helpers of the durable-store tests: temporary directories, synthetic ops, and redb storage
//! backends that count syncs or simulate a power cut.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
use hlc::Timestamp;
use rand::RngExt;
use rand::rngs::StdRng;
use redb::StorageBackend;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weft-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A register write by `replica` at `(ms, counter)`.
pub fn op(ms: u64, counter: u16, replica: u64) -> Op {
    let id = OpId::new(
        Timestamp::new(ms, counter).expect("valid timestamp"),
        ReplicaId::new(replica),
    );
    Op {
        id,
        schema_version: 1,
        collection: "users".into(),
        key: format!("k{ms}-{counter}-{replica}"),
        field: "name".into(),
        deps: Vec::new(),
        payload: Payload::Write(Value::String(format!("value of {id}"))),
    }
}

/// `n` ops of one replica with increasing timestamps from `(ms, 0)`.
pub fn ops(ms: u64, replica: u64, n: usize) -> Vec<Op> {
    (0..n).map(|i| op(ms + i as u64, 0, replica)).collect()
}

/// A file backend that counts `sync_data` calls and the times the file grows, and may sleep
/// in each sync (to make concurrent committers queue up deterministically enough).
#[derive(Debug)]
pub struct CountingBackend {
    pub inner: redb::backends::FileBackend,
    pub syncs: Arc<AtomicU64>,
    pub grows: Arc<AtomicU64>,
    pub sync_delay: std::time::Duration,
}

impl StorageBackend for CountingBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        if len > self.inner.len()? {
            self.grows.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.sync_delay);
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }
}

/// One write not yet synced.
#[derive(Debug, Clone)]
enum Pending {
    Data { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct DiskState {
    /// What survives a power cut for sure: the image as of the last sync.
    durable: Vec<u8>,
    /// What the running process sees.
    current: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Pending>,
    /// Operations (writes, length changes, syncs) left before the power goes; `None`: never.
    budget: Option<u64>,
    /// The power went: every later operation fails.
    dead: bool,
    syncs: u64,
}

fn apply(image: &mut Vec<u8>, w: &Pending) {
    match w {
        Pending::Data { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => image.resize(*len as usize, 0),
    }
}

/// A simulated disk: writes reach a volatile image at once and the durable image only at
/// `sync_data`. After an operation budget runs out the power goes: operations fail, and
/// [`PowerLossDisk::after_cut`] gives an image where each unsynced write was lost, torn (a
/// random prefix of it written) or kept, independently (so in any order).
#[derive(Debug, Clone, Default)]
pub struct PowerLossDisk(Arc<Mutex<DiskState>>);

impl PowerLossDisk {
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk holding `image`, all of it durable.
    pub fn from_image(image: Vec<u8>) -> Self {
        let disk = Self::default();
        {
            let mut s = disk.0.lock().unwrap();
            s.durable = image.clone();
            s.current = image;
        }
        disk
    }

    /// Power goes after `ops` more operations.
    pub fn cut_after(&self, ops: u64) {
        self.0.lock().unwrap().budget = Some(ops);
    }

    pub fn is_dead(&self) -> bool {
        self.0.lock().unwrap().dead
    }

    pub fn syncs(&self) -> u64 {
        self.0.lock().unwrap().syncs
    }

    /// The image a reboot finds: the durable image plus a random fate for each pending write.
    pub fn after_cut(&self, rng: &mut StdRng) -> Vec<u8> {
        let s = self.0.lock().unwrap();
        let mut image = s.durable.clone();
        for w in &s.pending {
            match rng.random_range(0..3) {
                0 => {}
                1 => apply(&mut image, w),
                _ => match w {
                    Pending::Data { offset, bytes } if !bytes.is_empty() => {
                        let keep = rng.random_range(0..bytes.len());
                        let torn = Pending::Data {
                            offset: *offset,
                            bytes: bytes[..keep].to_vec(),
                        };
                        apply(&mut image, &torn);
                    }
                    other => apply(&mut image, other),
                },
            }
        }
        image
    }

    fn step(&self) -> Result<std::sync::MutexGuard<'_, DiskState>, io::Error> {
        let mut s = self.0.lock().unwrap();
        if s.dead {
            return Err(io::Error::other("power cut"));
        }
        if let Some(b) = s.budget.as_mut() {
            if *b == 0 {
                s.dead = true;
                return Err(io::Error::other("power cut"));
            }
            *b -= 1;
        }
        Ok(s)
    }
}

impl StorageBackend for PowerLossDisk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.lock().unwrap().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.0.lock().unwrap();
        let start = offset as usize;
        let src = s
            .current
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut s = self.step()?;
        let w = Pending::SetLen(len);
        apply(&mut s.current, &w);
        s.pending.push(w);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut s = self.step()?;
        let pending = std::mem::take(&mut s.pending);
        for w in &pending {
            apply(&mut s.durable, w);
        }
        s.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut s = self.step()?;
        let w = Pending::Data {
            offset,
            bytes: data.to_vec(),
        };
        apply(&mut s.current, &w);
        s.pending.push(w);
        Ok(())
    }
}
