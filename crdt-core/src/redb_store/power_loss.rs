//! A simulated disk for redb: writes reach a volatile image at once and a durable image only
//! when synced, and the power can go after a given number of operations. Used by the
//! power-loss tests of this crate and by `weft::sim`.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::StorageBackend;

/// One write not yet synced.
#[derive(Debug, Clone)]
enum Pending {
    Data { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct DiskState {
    files: Vec<FileState>,
    /// Operations (writes, length changes, syncs) left before the power goes; `None`: never.
    budget: Option<u64>,
    /// The power went: every later write or sync fails.
    dead: bool,
    syncs: u64,
}

/// One file of the disk.
#[derive(Debug, Default)]
struct FileState {
    /// What survives a power cut for sure: the image as of the last sync.
    durable: Vec<u8>,
    /// What the running process sees.
    current: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Pending>,
}

fn apply(image: &mut Vec<u8>, w: &Pending) {
    match w {
        Pending::Data { offset, bytes } => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(bytes.len());
            if image.len() < end {
                image.resize(end, 0);
            }
            if let Some(dst) = image.get_mut(start..end) {
                dst.copy_from_slice(bytes);
            }
        }
        Pending::SetLen(len) => image.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

/// A simulated disk implementing redb's [`StorageBackend`], for crash and power-loss tests
/// and simulations ([`RedbStorage::with_backends`](crate::RedbStorage::with_backends)). A
/// handle is one file of the disk; clones share it, and [`PowerLossDisk::another_file`] adds
/// a file on the same disk (the store's commit log), which loses power at the same moment.
///
/// Writes reach a volatile image at once and the durable image only at `sync_data` (of that
/// file). After an operation budget ([`PowerLossDisk::cut_after`], counted over every file)
/// runs out the power goes: writes and syncs fail, and [`PowerLossDisk::after_cut`] gives the
/// image of a file a reboot finds, where each write not yet synced was lost, torn (a prefix of
/// it written) or kept, independently (so in any order). The disk reads no randomness of its
/// own: `after_cut` draws from the caller's.
///
/// ```
/// use crdt_core::{PowerLossDisk, RedbConfig, RedbStorage, Storage};
///
/// let disk = PowerLossDisk::new();
/// let log = disk.another_file();
/// let store = RedbStorage::with_backends(disk.clone(), log.clone(), RedbConfig::new())?;
/// assert_eq!(store.len()?, 0);
/// disk.cut_after(0); // the power goes now
/// drop(store);
/// // Any uniform source will do; this one always draws 0, so every unsynced write is lost.
/// let rebooted = PowerLossDisk::from_image(disk.after_cut(|_| 0));
/// let log = rebooted.another_file_from_image(log.after_cut(|_| 0));
/// let store = RedbStorage::with_backends(rebooted, log, RedbConfig::new())?;
/// assert_eq!(store.len()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PowerLossDisk {
    disk: Arc<Mutex<DiskState>>,
    file: usize,
}

impl Default for PowerLossDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl PowerLossDisk {
    /// A disk with one empty file, and power that never goes.
    pub fn new() -> Self {
        Self::from_image(Vec::new())
    }

    /// A disk with one file holding `image`, all of it durable.
    pub fn from_image(image: Vec<u8>) -> Self {
        let disk = DiskState {
            files: vec![FileState::default()],
            ..DiskState::default()
        };
        let this = Self {
            disk: Arc::new(Mutex::new(disk)),
            file: 0,
        };
        this.another_file_holding(image, Some(0))
    }

    /// A new empty file on the same disk.
    pub fn another_file(&self) -> Self {
        self.another_file_from_image(Vec::new())
    }

    /// A new file on the same disk holding `image`, all of it durable.
    pub fn another_file_from_image(&self, image: Vec<u8>) -> Self {
        self.another_file_holding(image, None)
    }

    fn another_file_holding(&self, image: Vec<u8>, slot: Option<usize>) -> Self {
        let mut s = self.lock();
        let file = FileState {
            durable: image.clone(),
            current: image,
            pending: Vec::new(),
        };
        let index = match slot {
            Some(i) => i,
            None => {
                s.files.push(FileState::default());
                s.files.len() - 1
            }
        };
        if let Some(f) = s.files.get_mut(index) {
            *f = file;
        }
        Self {
            disk: self.disk.clone(),
            file: index,
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The power goes after `ops` more operations (writes, length changes, syncs).
    pub fn cut_after(&self, ops: u64) {
        self.lock().budget = Some(ops);
    }

    /// Cancels a planned cut (the power stays on), unless it already went.
    pub fn keep_power(&self) {
        self.lock().budget = None;
    }

    /// Whether the power went.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// How many syncs reached the disk (of every file).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The image of this file a reboot finds: the durable image plus a random fate (lost, torn, kept) for
    /// each write not yet synced, in write order.
    ///
    /// `below(n)` must return a uniform number in `0..n` (it is only called with `n >= 1`).
    /// Each pending write draws `below(3)` for its fate: 0 lost, 1 kept, 2 torn; a torn write
    /// of `len > 0` bytes then draws `below(len)`, the length of the prefix that reached the
    /// disk. No other draws are made, so a seeded source replays the same image. A value out
    /// of range counts as the largest in range.
    pub fn after_cut(&self, mut below: impl FnMut(u64) -> u64) -> Vec<u8> {
        let s = self.lock();
        let Some(f) = s.files.get(self.file) else {
            return Vec::new();
        };
        let mut image = f.durable.clone();
        for w in &f.pending {
            match below(3) {
                0 => {}
                1 => apply(&mut image, w),
                _ => match w {
                    Pending::Data { offset, bytes } if !bytes.is_empty() => {
                        let len = bytes.len() as u64;
                        let keep = below(len).min(len - 1);
                        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
                        let torn = Pending::Data {
                            offset: *offset,
                            bytes: bytes.get(..keep).unwrap_or_default().to_vec(),
                        };
                        apply(&mut image, &torn);
                    }
                    other => apply(&mut image, other),
                },
            }
        }
        image
    }

    fn step(&self) -> Result<MutexGuard<'_, DiskState>, io::Error> {
        let mut s = self.lock();
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

impl PowerLossDisk {
    /// One operation on this file, if the power is still on.
    fn on_file<T>(&self, op: impl FnOnce(&mut FileState) -> T) -> Result<T, io::Error> {
        let mut s = self.step()?;
        let file = s
            .files
            .get_mut(self.file)
            .ok_or_else(|| io::Error::other("no such file"))?;
        Ok(op(file))
    }

    fn read_file<T>(&self, op: impl FnOnce(&FileState) -> T) -> Result<T, io::Error> {
        let s = self.lock();
        let file = s
            .files
            .get(self.file)
            .ok_or_else(|| io::Error::other("no such file"))?;
        Ok(op(file))
    }
}

impl StorageBackend for PowerLossDisk {
    fn len(&self) -> Result<u64, io::Error> {
        self.read_file(|f| f.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.read_file(|f| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let src = f
                .current
                .get(start..start.saturating_add(out.len()))
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
            out.copy_from_slice(src);
            Ok(())
        })?
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.on_file(|f| {
            let w = Pending::SetLen(len);
            apply(&mut f.current, &w);
            f.pending.push(w);
        })
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.on_file(|f| {
            let pending = std::mem::take(&mut f.pending);
            for w in &pending {
                apply(&mut f.durable, w);
            }
        })?;
        self.lock().syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.on_file(|f| {
            let w = Pending::Data {
                offset,
                bytes: data.to_vec(),
            };
            apply(&mut f.current, &w);
            f.pending.push(w);
        })
    }
}
