//! A sequence as a flat list of runs, for snapshots: serialized without chunks or indexes,
//! which are rebuilt on load.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Chunk, Content, Counts, Ref, Run, Sequence};
use crate::ReplicaId;

/// Runs per chunk when a sequence is rebuilt from an image.
const LOAD_RUNS: usize = 64;

#[derive(Serialize, Deserialize)]
struct Image<C> {
    replicas: Vec<ReplicaId>,
    runs: Vec<RunImage<C>>,
}

#[derive(Serialize, Deserialize)]
struct RunImage<C> {
    replica: u32,
    seq: u64,
    len: u64,
    deleted: bool,
    left: Option<(u32, u64)>,
    right: Option<(u32, u64)>,
    content: C,
}

impl<C: Content + Serialize> Serialize for Sequence<C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let runs = self
            .chunks
            .iter()
            .flat_map(|c| &c.runs)
            .map(|r| RunImage {
                replica: r.replica,
                seq: r.seq,
                len: r.len,
                deleted: r.deleted,
                left: r.left.map(|x| (x.replica, x.seq)),
                right: r.right.map(|x| (x.replica, x.seq)),
                content: &r.content,
            })
            .collect();
        Image {
            replicas: self.replicas.clone(),
            runs,
        }
        .serialize(serializer)
    }
}

impl<'de, C: Content + DeserializeOwned> Deserialize<'de> for Sequence<C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let image = Image::<C>::deserialize(deserializer)?;
        let n = image.replicas.len() as u32;
        let ok = |r: &Option<(u32, u64)>| r.is_none_or(|(replica, _)| replica < n);
        let mut seq = Sequence::default();
        for replica in image.replicas {
            if seq.replica_index.contains_key(&replica) {
                return Err(D::Error::custom("a replica is listed twice"));
            }
            seq.local_replica(replica);
        }
        let mut chunk = Chunk {
            id: 0,
            runs: Vec::new(),
            counts: Counts::default(),
        };
        for run in image.runs {
            let valid = run.replica < n
                && run.len > 0
                && ok(&run.left)
                && ok(&run.right)
                && (run.deleted || run.content.count() as u64 == run.len);
            if !valid {
                return Err(D::Error::custom("a run of the sequence is malformed"));
            }
            let to_ref = |x: Option<(u32, u64)>| x.map(|(replica, seq)| Ref { replica, seq });
            chunk.runs.push(Run {
                replica: run.replica,
                seq: run.seq,
                len: run.len,
                deleted: run.deleted,
                left: to_ref(run.left),
                right: to_ref(run.right),
                content: run.content,
            });
            if chunk.runs.len() == LOAD_RUNS {
                let id = seq.chunks.len() as u32;
                let next = Chunk {
                    id: id + 1,
                    runs: Vec::new(),
                    counts: Counts::default(),
                };
                seq.push_chunk(std::mem::replace(&mut chunk, next));
            }
        }
        if !chunk.runs.is_empty() {
            seq.push_chunk(chunk);
        }
        Ok(seq)
    }
}

impl<C: Content> Sequence<C> {
    /// Appends a loaded chunk, indexing its runs and adding its counts.
    fn push_chunk(&mut self, mut chunk: Chunk<C>) {
        chunk.id = self.chunks.len() as u32;
        chunk.recount();
        for run in &chunk.runs {
            self.index[run.replica as usize].insert(run.seq, chunk.id);
        }
        self.counts.total += chunk.counts.total;
        self.counts.visible += chunk.counts.visible;
        self.counts.utf16 += chunk.counts.utf16;
        self.counts.utf8 += chunk.counts.utf8;
        self.chunk_pos.push(self.chunks.len() as u32);
        self.chunks.push(chunk);
    }
}
