//! A sequence as a flat list of runs, for snapshots: serialized without the tree or indexes,
//! which are rebuilt on load.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tree::{NONE, Tree};
use super::{Content, Ref, Run, Sequence};
use crate::ReplicaId;

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
            .tree
            .runs()
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
        let mut runs = Vec::with_capacity(image.runs.len());
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
            runs.push(Run {
                replica: run.replica,
                seq: run.seq,
                len: run.len,
                deleted: run.deleted,
                left: to_ref(run.left),
                right: to_ref(run.right),
                content: run.content,
            });
        }
        seq.tree = Tree::from_runs(runs);
        seq.reindex();
        Ok(seq)
    }
}

impl<C: Content> Sequence<C> {
    /// Points the id index at the leaf of every run.
    fn reindex(&mut self) {
        let mut leaf = self.tree.first();
        while leaf != NONE {
            for run in &self.tree.leaf(leaf).runs {
                self.index[run.replica as usize].insert(run.seq, leaf);
            }
            leaf = self.tree.next(leaf);
        }
    }
}
