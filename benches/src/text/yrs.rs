//! yrs on the traces: a [`Doc`] per agent with a root text `"text"`. yrs counts offsets in UTF-8
//! bytes or UTF-16 units, not code points; the traces have no character above U+FFFF (their
//! README says so, and [`Trace::has_astral`] checks), where a UTF-16 unit is a code point, so
//! the docs use [`OffsetKind::Utf16`] and a trace with astral characters is skipped. Each txn is
//! one `transact_mut` with a `remove_range` and an `insert` per patch, committed when it drops;
//! the update carried to other agents is that transaction's `encode_update_v1`. The full
//! history is one v1 update against the empty state vector, applied to a fresh doc with
//! `apply_update`.

use ::yrs::updates::decoder::Decode;
use ::yrs::{
    ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact,
    Update,
};

use super::replay::{ReplayError, TextReplica, fail};
use super::trace::{Patch, Trace};

/// One yrs replica: the doc and its root text.
pub struct Yrs {
    doc: Doc,
    text: TextRef,
}

fn open(client_id: u64) -> Yrs {
    let doc = Doc::with_options(Options {
        client_id: ClientID::new(client_id),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    let text = doc.get_or_insert_text("text");
    Yrs { doc, text }
}

fn u32_of(n: usize, what: &'static str) -> Result<u32, ReplayError> {
    u32::try_from(n).map_err(fail(what))
}

impl TextReplica for Yrs {
    type Update = Vec<u8>;

    fn name() -> String {
        "yrs 0.28.1".into()
    }

    fn skip_reason(trace: &Trace) -> Option<String> {
        trace.has_astral().then(|| {
            "yrs counts UTF-16 units, and this trace has characters above U+FFFF".to_owned()
        })
    }

    fn open_all(agents: usize) -> Result<Vec<Self>, ReplayError> {
        Ok((0..agents as u64).map(|a| open(a + 1)).collect())
    }

    fn local(
        &mut self,
        patches: &[Patch],
        keep_update: bool,
    ) -> Result<Option<Vec<u8>>, ReplayError> {
        let mut txn = self.doc.transact_mut();
        for p in patches {
            let pos = u32_of(p.pos, "yrs: position")?;
            if p.del > 0 {
                self.text
                    .remove_range(&mut txn, pos, u32_of(p.del, "yrs: delete length")?);
            }
            if !p.ins.is_empty() {
                self.text.insert(&mut txn, pos, &p.ins);
            }
        }
        Ok(keep_update.then(|| txn.encode_update_v1()))
    }

    fn receive(&mut self, updates: &[&Vec<u8>]) -> Result<(), ReplayError> {
        let mut txn = self.doc.transact_mut();
        for bytes in updates {
            let update = Update::decode_v1(bytes).map_err(fail("yrs: decode update"))?;
            txn.apply_update(update)
                .map_err(fail("yrs: apply update"))?;
        }
        Ok(())
    }

    fn text(&self) -> Result<String, ReplayError> {
        Ok(self.text.get_string(&self.doc.transact()))
    }

    fn export(&mut self) -> Result<Vec<u8>, ReplayError> {
        Ok(self
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default()))
    }

    fn load(bytes: Vec<u8>) -> Result<Self, ReplayError> {
        let fresh = open(u64::from(u32::MAX));
        let update = Update::decode_v1(&bytes).map_err(fail("yrs: decode update"))?;
        drop(bytes);
        fresh
            .doc
            .transact_mut()
            .apply_update(update)
            .map_err(fail("yrs: apply update"))?;
        Ok(fresh)
    }
}
