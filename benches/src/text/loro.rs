//! loro on the traces: a [`LoroDoc`] per agent (peer id = agent + 1) with a text container
//! `"text"`; [`LoroText::insert`] and [`LoroText::delete`] take Unicode code point positions.
//! Each txn is its patches and a `commit`. With more than one agent, each doc subscribes to its
//! local updates (`subscribe_local_update`, the bytes an editor binding sends to its peers on
//! each commit); those are the updates carried to other agents, applied with `import` (or
//! `import_batch` when several arrive at once). The full
//! history is `ExportMode::all_updates()` (every change, not the snapshot with its state),
//! imported into a fresh doc, which merges every op the way remote changes are merged.

use std::sync::{Arc, Mutex};

use ::loro::{ExportMode, LoroDoc, LoroText, Subscription};

use super::replay::{ReplayError, TextReplica, fail};
use super::trace::Patch;

/// One loro replica: the doc, its text container, and, when it has peers, the local updates
/// its commits emitted.
pub struct Loro {
    doc: LoroDoc,
    text: LoroText,
    outbox: Option<(Outbox, Subscription)>,
}

/// The local updates a doc's commits emitted and its replay has not taken yet.
type Outbox = Arc<Mutex<Vec<Vec<u8>>>>;

const TEXT: &str = "text";

fn open(peer: u64) -> Result<Loro, ReplayError> {
    let doc = LoroDoc::new();
    doc.set_peer_id(peer).map_err(fail("loro: set_peer_id"))?;
    let text = doc.get_text(TEXT);
    Ok(Loro {
        doc,
        text,
        outbox: None,
    })
}

impl TextReplica for Loro {
    type Update = Vec<u8>;

    fn name() -> String {
        "loro 1.17.1".into()
    }

    fn open_all(agents: usize) -> Result<Vec<Self>, ReplayError> {
        let mut replicas = (0..agents as u64)
            .map(|a| open(a + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if agents > 1 {
            for replica in &mut replicas {
                let outbox: Outbox = Arc::new(Mutex::new(Vec::new()));
                let sink = Arc::clone(&outbox);
                let subscription = replica.doc.subscribe_local_update(Box::new(move |bytes| {
                    if let Ok(mut sink) = sink.lock() {
                        sink.push(bytes.clone());
                    }
                    true
                }));
                replica.outbox = Some((outbox, subscription));
            }
        }
        Ok(replicas)
    }

    fn local(
        &mut self,
        patches: &[Patch],
        keep_update: bool,
    ) -> Result<Option<Vec<u8>>, ReplayError> {
        for p in patches {
            if p.del > 0 {
                self.text
                    .delete(p.pos, p.del)
                    .map_err(fail("loro: delete"))?;
            }
            if !p.ins.is_empty() {
                self.text
                    .insert(p.pos, &p.ins)
                    .map_err(fail("loro: insert"))?;
            }
        }
        self.doc.commit();
        let Some((outbox, _)) = &self.outbox else {
            return match keep_update {
                true => Err(ReplayError::new(
                    "loro: asked for an update, but this replica has no peers",
                )),
                false => Ok(None),
            };
        };
        let mut outbox = outbox
            .lock()
            .map_err(|_| ReplayError::new("loro: the local update callback panicked"))?;
        if outbox.len() > 1 {
            return Err(ReplayError::new(format!(
                "loro: one commit emitted {} local updates",
                outbox.len()
            )));
        }
        let update = outbox.pop();
        Ok(update.filter(|_| keep_update))
    }

    fn receive(&mut self, updates: &[&Vec<u8>]) -> Result<(), ReplayError> {
        let status = match updates {
            [one] => self.doc.import(one).map_err(fail("loro: import"))?,
            _ => {
                let batch: Vec<Vec<u8>> = updates.iter().map(|&u| u.clone()).collect();
                self.doc
                    .import_batch(&batch)
                    .map_err(fail("loro: import_batch"))?
            }
        };
        if status.pending.is_some() {
            return Err(ReplayError::new(
                "loro: an update waits for changes it depends on",
            ));
        }
        Ok(())
    }

    fn text(&self) -> Result<String, ReplayError> {
        Ok(self.text.to_string())
    }

    fn export(&mut self) -> Result<Vec<u8>, ReplayError> {
        self.doc
            .export(ExportMode::all_updates())
            .map_err(fail("loro: export all updates"))
    }

    fn load(bytes: Vec<u8>) -> Result<Self, ReplayError> {
        let fresh = open(u64::from(u32::MAX))?;
        fresh.doc.import(&bytes).map_err(fail("loro: import"))?;
        Ok(fresh)
    }
}
