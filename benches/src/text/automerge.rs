//! automerge on the traces: an [`AutoCommit`] document per agent with a `Text` object under the
//! root, positions in Unicode code points (`TextEncoding::UnicodeCodePoint`). Each txn is a
//! `splice_text` per patch and a `commit`, so each txn is its own change; the update carried to
//! other agents is that change (`get_last_local_change`), applied with `apply_changes`. The
//! full history is `save()` (automerge's compressed document format, every op of every change),
//! loaded into a fresh document with `load_with_options`.

use ::automerge::transaction::Transactable;
use ::automerge::{
    ActorId, AutoCommit, Change, LoadOptions, ObjId, ObjType, ROOT, ReadDoc, TextEncoding,
};

use super::replay::{ReplayError, TextReplica, fail};
use super::trace::Patch;

/// One automerge replica: the document and its text object.
pub struct Automerge {
    doc: AutoCommit,
    text: ObjId,
}

const ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// A fixed actor per agent, so runs are repeatable.
fn actor(agent: usize) -> ActorId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(agent as u64 + 1).to_be_bytes());
    ActorId::from(bytes)
}

impl TextReplica for Automerge {
    type Update = Change;

    fn name() -> String {
        "automerge 0.12.0".into()
    }

    fn open_all(agents: usize) -> Result<Vec<Self>, ReplayError> {
        let mut first = AutoCommit::new_with_encoding(ENCODING).with_actor(actor(0));
        let text = first
            .put_object(ROOT, "text", ObjType::Text)
            .map_err(fail("automerge: create the text object"))?;
        first.commit();
        // The others start from the first's history, so that all share one text object.
        let mut replicas: Vec<Self> = (1..agents)
            .map(|a| Self {
                doc: first.fork().with_actor(actor(a)),
                text: text.clone(),
            })
            .collect();
        replicas.insert(0, Self { doc: first, text });
        Ok(replicas)
    }

    fn local(
        &mut self,
        patches: &[Patch],
        keep_update: bool,
    ) -> Result<Option<Change>, ReplayError> {
        for p in patches {
            let del = isize::try_from(p.del).map_err(fail("automerge: delete length"))?;
            self.doc
                .splice_text(&self.text, p.pos, del, &p.ins)
                .map_err(fail("automerge: splice_text"))?;
        }
        let committed = self.doc.commit();
        Ok(if keep_update && committed.is_some() {
            self.doc.get_last_local_change()
        } else {
            None
        })
    }

    fn receive(&mut self, updates: &[&Change]) -> Result<(), ReplayError> {
        self.doc
            .apply_changes(updates.iter().map(|&c| c.clone()))
            .map_err(fail("automerge: apply_changes"))
    }

    fn text(&self) -> Result<String, ReplayError> {
        self.doc.text(&self.text).map_err(fail("automerge: text"))
    }

    fn export(&mut self) -> Result<Vec<u8>, ReplayError> {
        Ok(self.doc.save())
    }

    fn load(bytes: Vec<u8>) -> Result<Self, ReplayError> {
        let doc = AutoCommit::load_with_options(&bytes, LoadOptions::new().text_encoding(ENCODING))
            .map_err(fail("automerge: load"))?;
        let (_, text) = doc
            .get(ROOT, "text")
            .map_err(fail("automerge: get the text object"))?
            .ok_or_else(|| ReplayError::new("automerge: the loaded document has no text"))?;
        Ok(Self { doc, text })
    }
}
