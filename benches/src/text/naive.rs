//! The naive reference for sequential replays: the document as a `Vec<char>`, each patch a
//! splice. Obviously right and O(n) per patch, so only for checking prefixes.

use std::fmt;

use super::trace::Patch;

/// A document as a plain vector of code points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NaiveText(Vec<char>);

impl NaiveText {
    /// Applies one patch: deletes `del` code points at `pos`, then inserts `ins` there. Fails,
    /// changing nothing, if the patch reaches outside the document.
    pub fn apply(&mut self, patch: &Patch) -> Result<(), String> {
        let len = self.0.len();
        let end = patch.pos.checked_add(patch.del).filter(|&end| end <= len);
        let Some(end) = end else {
            return Err(format!(
                "patch at {} deleting {} is outside the document of {len} code points",
                patch.pos, patch.del
            ));
        };
        self.0.splice(patch.pos..end, patch.ins.chars());
        Ok(())
    }

    /// Applies the patches of one txn in order.
    pub fn apply_txn(&mut self, patches: &[Patch]) -> Result<(), String> {
        for (i, patch) in patches.iter().enumerate() {
            self.apply(patch).map_err(|e| format!("patch {i}: {e}"))?;
        }
        Ok(())
    }

    /// Length in code points.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the document is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for NaiveText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|c| fmt::Write::write_char(f, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(pos: usize, del: usize, ins: &str) -> Patch {
        Patch {
            pos,
            del,
            ins: ins.into(),
        }
    }

    #[test]
    fn splices_code_points() {
        let mut doc = NaiveText::default();
        doc.apply_txn(&[patch(0, 0, "héllo"), patch(1, 1, "e"), patch(5, 0, "!")])
            .unwrap();
        assert_eq!(doc.to_string(), "hello!");
        assert_eq!(doc.len(), 6);
        assert!(doc.apply(&patch(6, 1, "")).is_err());
        assert!(doc.apply(&patch(usize::MAX, 1, "")).is_err());
        assert_eq!(doc.to_string(), "hello!");
    }
}
