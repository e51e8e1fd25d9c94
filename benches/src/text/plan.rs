//! Which txns each agent's replica must receive, and when, for a concurrent replay.
//!
//! Agent `a` types txn `i` on the version its parents name. Its replica holds the agent's
//! earlier txns and what it received; before txn `i` it must receive every txn in the
//! transitive closure of `i`'s parents that it lacks, and nothing else. That works only if the
//! agent's previous txn is in that closure (an agent never edits concurrently with itself);
//! [`Plan::new`] checks it, so that a replay never types on the wrong version.
//!
//! The plan is what a sync protocol would work out; it is computed once per trace, outside the
//! timed replay, and shared by every system so that all of them exchange the same txns.

use super::trace::{Trace, TraceError};

/// For each txn, the txns its agent's replica receives just before typing it; at the end, what
/// each replica receives to hold everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `before[i]`: txns (ascending, so parents come first) that txn `i`'s agent receives
    /// before typing txn `i`.
    pub before: Vec<Vec<usize>>,
    /// `finally[a]`: txns (ascending) that agent `a` receives after the last txn, so that every
    /// replica holds every txn.
    pub finally: Vec<Vec<usize>>,
}

impl Plan {
    /// Plans the exchanges of `trace`. For a trace with one agent nothing is exchanged.
    pub fn new(trace: &Trace) -> Result<Self, TraceError> {
        let n = trace.txns.len();
        let mut known = vec![vec![false; n]; trace.agents];
        let mut last: Vec<Option<usize>> = vec![None; trace.agents];
        let mut before = Vec::with_capacity(n);
        let mut stack = Vec::new();
        for (i, txn) in trace.txns.iter().enumerate() {
            let agent = txn.agent;
            let known = &mut known[agent];
            let mut missing = Vec::new();
            let mut saw_last = last[agent].is_none();
            stack.extend(txn.parents.iter().copied());
            while let Some(t) = stack.pop() {
                if known[t] {
                    saw_last |= Some(t) == last[agent];
                    continue;
                }
                known[t] = true;
                missing.push(t);
                stack.extend(trace.txns[t].parents.iter().copied());
            }
            if !saw_last {
                return Err(TraceError {
                    file: trace.name.clone(),
                    what: format!(
                        "txn {i} of agent {agent} does not descend from the agent's previous \
                         txn {}: an agent must not edit concurrently with itself",
                        last[agent].unwrap_or_default()
                    ),
                });
            }
            known[i] = true;
            last[agent] = Some(i);
            missing.sort_unstable();
            before.push(missing);
        }
        let finally = known
            .iter()
            .map(|k| (0..n).filter(|&t| !k[t]).collect())
            .collect();
        Ok(Self { before, finally })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(json: &str) -> Result<Trace, TraceError> {
        Trace::parse("t.json", json.as_bytes())
    }

    #[test]
    fn plans_what_each_agent_lacks() {
        // 0 (a0) <- 1 (a1); 0 <- 2 (a0); {1, 2} <- 3 (a1).
        let t = trace(
            r#"{"kind":"concurrent","numAgents":2,"endContent":"","txns":[
            {"parents":[],"agent":0,"patches":[]},
            {"parents":[0],"agent":1,"patches":[]},
            {"parents":[0],"agent":0,"patches":[]},
            {"parents":[1,2],"agent":1,"patches":[]}]}"#,
        )
        .unwrap();
        let plan = Plan::new(&t).unwrap();
        assert_eq!(plan.before, vec![vec![], vec![0], vec![], vec![2]]);
        assert_eq!(plan.finally, vec![vec![1, 3], vec![]]);
    }

    #[test]
    fn sequential_traces_exchange_nothing() {
        let t = trace(
            r#"{"endContent":"ab","txns":[{"patches":[[0,0,"a"]]},{"patches":[[1,0,"b"]]}]}"#,
        )
        .unwrap();
        let plan = Plan::new(&t).unwrap();
        assert!(plan.before.iter().all(Vec::is_empty));
        assert_eq!(plan.finally, vec![Vec::<usize>::new()]);
    }

    #[test]
    fn an_agent_concurrent_with_itself_is_an_error() {
        let t = trace(
            r#"{"kind":"concurrent","numAgents":1,"endContent":"","txns":[
            {"parents":[],"agent":0,"patches":[]},
            {"parents":[],"agent":0,"patches":[]}]}"#,
        )
        .unwrap();
        let e = Plan::new(&t).unwrap_err().to_string();
        assert!(e.contains("txn 1 of agent 0 does not descend"), "{e}");
    }
}
