//! diamond-types on the traces, its own way: one [`OpLog`] holding every agent's ops, and a
//! [`Branch`] (a checked-out document) per agent. Before a txn, its agent's branch merges the
//! version the txn's parents name (`Branch::merge`); the txn is then one
//! `apply_local_operations` call on that branch, an `Operation` per insert and per delete, in
//! code point positions. Deletes are recorded without their content, as the encoded history
//! leaves it out anyway. At the end every branch merges the op log's tip.
//!
//! The full history is the op log encoded with `ENCODE_FULL`; a fresh [`ListCRDT::load_from`]
//! decodes it and checks out its tip, which runs the merge over every op.

use ::diamond_types::list::encoding::ENCODE_FULL;
use ::diamond_types::list::operation::Operation;
use ::diamond_types::list::{Branch, ListCRDT, OpLog};
use ::diamond_types::{AgentId, LocalVersion};

use super::plan::Plan;
use super::replay::{ReplayError, TextSystem, fail};
use super::trace::{Patch, Trace};

/// diamond-types' [`TextSystem`].
#[derive(Default)]
pub struct DiamondTypes {
    oplog: Option<OpLog>,
    branches: Vec<Branch>,
    fresh: Option<ListCRDT>,
}

/// The operations of one txn, checked against the branch's length as they go.
fn operations(
    branch_len: usize,
    patches: &[Patch],
    ops: &mut Vec<Operation>,
) -> Result<(), String> {
    let mut len = branch_len;
    for p in patches {
        let end = p.pos.checked_add(p.del).filter(|&end| end <= len);
        let Some(end) = end else {
            return Err(format!(
                "patch at {} deleting {} is outside the document of {len} code points",
                p.pos, p.del
            ));
        };
        if p.del > 0 {
            ops.push(Operation::new_delete(p.pos..end));
            len -= p.del;
        }
        if !p.ins.is_empty() {
            ops.push(Operation::new_insert(p.pos, &p.ins));
            len += p.ins.chars().count();
        }
    }
    Ok(())
}

impl TextSystem for DiamondTypes {
    fn name(&self) -> String {
        "diamond-types 1.0.0".into()
    }

    fn replay(&mut self, trace: &Trace, plan: &Plan) -> Result<(), ReplayError> {
        let agents = trace.agents.max(1);
        let mut oplog = OpLog::new();
        let ids: Vec<AgentId> = (0..agents)
            .map(|a| oplog.get_or_create_agent_id(&format!("agent{a}")))
            .collect();
        let mut branches: Vec<Branch> = (0..agents).map(|_| Branch::new()).collect();
        let exchange = agents > 1;
        // The version after each txn, for merging it into other branches.
        let mut versions: Vec<LocalVersion> = Vec::new();
        let mut ops = Vec::new();
        for (i, txn) in trace.txns.iter().enumerate() {
            let branch = &mut branches[txn.agent];
            if !plan.before[i].is_empty() {
                let mut parents = txn.parents.iter().map(|&p| &versions[p]);
                let first = parents.next().cloned().unwrap_or_default();
                let frontier = parents.fold(first, |acc, v| oplog.version_union(&acc, v));
                branch.merge(&oplog, &frontier);
            }
            ops.clear();
            operations(branch.len(), &txn.patches, &mut ops)
                .map_err(|e| ReplayError(format!("diamond-types: txn {i}: {e}")))?;
            if !ops.is_empty() {
                branch.apply_local_operations(&mut oplog, ids[txn.agent], &ops);
            }
            if exchange {
                versions.push(branch.local_version());
            }
        }
        drop(versions);
        let tip = oplog.local_version();
        for (agent, branch) in branches.iter_mut().enumerate() {
            if !plan.finally[agent].is_empty() {
                branch.merge(&oplog, &tip);
            }
        }
        self.oplog = Some(oplog);
        self.branches = branches;
        Ok(())
    }

    fn texts(&self) -> Result<Vec<String>, ReplayError> {
        Ok(self
            .branches
            .iter()
            .map(|b| b.content().to_string())
            .collect())
    }

    fn keep_one(&mut self) {
        self.branches.truncate(1);
        self.branches.shrink_to_fit();
    }

    fn export(&mut self) -> Result<Vec<u8>, ReplayError> {
        let oplog = self
            .oplog
            .as_ref()
            .ok_or_else(|| ReplayError::new("diamond-types: replay did not run"))?;
        Ok(oplog.encode(ENCODE_FULL))
    }

    fn drop_source(&mut self) {
        self.oplog = None;
        self.branches = Vec::new();
    }

    fn load(&mut self, bytes: Vec<u8>) -> Result<(), ReplayError> {
        self.fresh = Some(ListCRDT::load_from(&bytes).map_err(fail("diamond-types: load"))?);
        Ok(())
    }

    fn fresh_text(&self) -> Result<String, ReplayError> {
        let fresh = self
            .fresh
            .as_ref()
            .ok_or_else(|| ReplayError::new("diamond-types: load did not run"))?;
        Ok(fresh.branch.content().to_string())
    }

    fn drop_fresh(&mut self) {
        self.fresh = None;
    }
}
