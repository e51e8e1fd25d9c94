//! A deterministic network of nodes running sync sessions: virtual time, per-message latency
//! (so messages reorder), drops, duplicates and partitions, all from one seed.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use crdt_core::codec::EncodedOps;
use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
use merkle_sync::{Config, Event, Index, Scope, Session, SessionError};

/// splitmix64: the harness's only source of randomness.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

pub fn op(collection: &str, ms: u64, replica: u64, size: usize) -> Op {
    Op {
        id: OpId::new(
            hlc::Timestamp::new(ms, 0).expect("ms in range"),
            ReplicaId::new(replica),
        ),
        schema_version: 1,
        collection: collection.into(),
        key: format!("k{}", ms % 97),
        field: "f".into(),
        deps: vec![],
        payload: Payload::Write(Value::String("x".repeat(size))),
    }
}

/// One peer: its log and the index the application keeps beside it.
pub struct Node {
    pub log: BTreeMap<OpId, Op>,
    pub index: Index,
    /// Batches applied so far.
    batches: u64,
}

impl Node {
    pub fn new(ops: impl IntoIterator<Item = Op>) -> Self {
        let log: BTreeMap<OpId, Op> = ops.into_iter().map(|op| (op.id, op)).collect();
        let index = Index::from_ops(log.values());
        Self {
            log,
            index,
            batches: 0,
        }
    }

    /// Stores the ops it lacks and indexes them as one batch: in turns, from the bytes as the
    /// peer sent them (the ops held already are ignored by the index, as by the log) or
    /// decoded, so that every run goes through both.
    pub fn apply(&mut self, batch: EncodedOps) {
        let ops = batch.to_ops().expect("a session hands out ops that decode");
        let new: Vec<Op> = ops
            .into_iter()
            .filter(|op| !self.log.contains_key(&op.id))
            .collect();
        self.batches += 1;
        if self.batches.is_multiple_of(2) {
            self.index.insert_encoded(&batch);
        } else {
            self.index.insert_ops(&new);
        }
        self.log.extend(new.into_iter().map(|op| (op.id, op)));
    }
}

#[derive(Clone, Debug)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub latency: (u64, u64),
}

impl Faults {
    pub const NONE: Self = Self {
        drop: 0.0,
        duplicate: 0.0,
        latency: (50, 50),
    };
}

struct InFlight {
    at: u64,
    seq: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

/// Nodes with a session for every pair (or the pairs given), and the wire between them.
pub struct Net {
    pub nodes: Vec<Node>,
    /// (node, peer, session on node talking to peer)
    pub sessions: Vec<(usize, usize, Session)>,
    pub now: u64,
    pub faults: Faults,
    pub rng: Rng,
    flight: Vec<InFlight>,
    seq: u64,
    /// Nodes cut off from each other until this time.
    pub partition_until: u64,
    pub bytes_on_wire: u64,
    pub wire: Vec<Vec<u8>>,
    pub keep_wire: bool,
    pub dropped_ops: u64,
    pub errors: Vec<String>,
}

impl Net {
    pub fn new(
        nodes: Vec<Node>,
        scope: &Scope,
        config: &Config,
        faults: Faults,
        seed: u64,
    ) -> Self {
        let mut sessions = Vec::new();
        for a in 0..nodes.len() {
            for b in 0..nodes.len() {
                if a != b {
                    let s = Session::new(0, scope.clone(), config.clone(), &nodes[a].index);
                    sessions.push((a, b, s));
                }
            }
        }
        Self {
            nodes,
            sessions,
            now: 0,
            faults,
            rng: Rng(seed),
            flight: Vec::new(),
            seq: 0,
            partition_until: 0,
            bytes_on_wire: 0,
            wire: Vec::new(),
            keep_wire: false,
            dropped_ops: 0,
            errors: Vec::new(),
        }
    }

    fn session_index(&self, node: usize, peer: usize) -> Option<usize> {
        self.sessions
            .iter()
            .position(|(a, b, _)| *a == node && *b == peer)
    }

    fn record(&mut self, who: (usize, usize), r: Result<(), SessionError>) {
        if let Err(e) = r {
            self.errors
                .push(format!("session {}->{}: {e}", who.0, who.1));
        }
    }

    /// Moves every queued message onto the wire.
    fn flush(&mut self) {
        for i in 0..self.sessions.len() {
            loop {
                let (a, b, s) = &mut self.sessions[i];
                let (a, b) = (*a, *b);
                let node = &self.nodes[a];
                let out = match s.poll_transmit(self.now, &node.index, &node.log) {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => break,
                    Err(SessionError::Closed) => break,
                    Err(e) => {
                        self.errors.push(format!("session {a}->{b}: {e}"));
                        break;
                    }
                };
                self.bytes_on_wire += out.len() as u64;
                if self.keep_wire {
                    self.wire.push(out.clone());
                }
                let copies = if self.rng.chance(self.faults.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    if self.now < self.partition_until || self.rng.chance(self.faults.drop) {
                        if out.first() == Some(&6) {
                            let n = crdt_core::codec::decode_ops(&out[1..]).map_or(0, |o| o.len());
                            self.dropped_ops += n as u64;
                        }
                        continue;
                    }
                    let (lo, hi) = self.faults.latency;
                    let at = self.now + lo + self.rng.below(hi - lo + 1);
                    self.seq += 1;
                    self.flight.push(InFlight {
                        at,
                        seq: self.seq,
                        from: a,
                        to: b,
                        bytes: out.clone(),
                    });
                }
            }
        }
    }

    fn drain_events(&mut self, i: usize) {
        let node = self.sessions[i].0;
        while let Some(e) = self.sessions[i].2.poll_event() {
            if let Event::Ops(ops) = e {
                self.nodes[node].apply(ops);
            }
        }
    }

    /// Runs until every session is synced and the wire is empty, or `limit` passes.
    pub fn run(&mut self, limit: u64) -> Result<(), String> {
        loop {
            self.flush();
            if !self.errors.is_empty() {
                return Err(format!(
                    "{} at t={}; {}",
                    self.errors.join("; "),
                    self.now,
                    self.describe()
                ));
            }
            if self.flight.is_empty() && self.sessions.iter().all(|(_, _, s)| s.is_synced()) {
                return Ok(());
            }
            let next_msg = self.flight.iter().map(|m| (m.at, m.seq)).min();
            let next_timer = self
                .sessions
                .iter()
                .filter_map(|(_, _, s)| s.poll_timeout())
                .min();
            let next = match (next_msg, next_timer) {
                (Some((m, _)), Some(t)) => m.min(t),
                (Some((m, _)), None) => m,
                (None, Some(t)) => t,
                (None, None) => return Err("stuck: nothing in flight, no timer, not synced".into()),
            };
            if next > limit {
                return Err(format!("not synced by t={limit}: {}", self.describe()));
            }
            self.now = self.now.max(next);
            // Deliver everything due now, in (time, seq) order.
            self.flight
                .sort_by_key(|m| std::cmp::Reverse((m.at, m.seq)));
            while self.flight.last().is_some_and(|m| m.at <= self.now) {
                let m = self.flight.pop().expect("checked");
                let Some(i) = self.session_index(m.to, m.from) else {
                    continue;
                };
                let node = &self.nodes[m.to];
                let r = self.sessions[i]
                    .2
                    .handle_message(self.now, &m.bytes, &node.index);
                self.record((m.to, m.from), r);
                self.drain_events(i);
            }
            for i in 0..self.sessions.len() {
                if self.sessions[i]
                    .2
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    let node = &self.nodes[self.sessions[i].0];
                    let r = self.sessions[i].2.handle_timeout(self.now, &node.index);
                    let who = (self.sessions[i].0, self.sessions[i].1);
                    self.record(who, r);
                }
            }
        }
    }

    /// Cuts the link: of the messages in flight, keeps the first `keep` (by send order) and
    /// loses the rest, as a connection that dies mid-transfer.
    pub fn cut_link(&mut self, keep: usize) {
        self.flight.sort_by_key(|m| m.seq);
        for m in self.flight.drain(keep.min(self.flight.len())..) {
            if m.bytes.first() == Some(&6) {
                let n = crdt_core::codec::decode_ops(&m.bytes[1..]).map_or(0, |o| o.len());
                self.dropped_ops += n as u64;
            }
        }
    }

    /// Each session's view, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (a, b, s) in &self.sessions {
            out += &format!(
                "[{a}->{b} synced={} {:?} len={}] ",
                s.is_synced(),
                s.stats(),
                self.nodes[*a].log.len()
            );
        }
        out
    }

    /// Invariants at the end of a run: every index matches a fresh index of its log (its
    /// cached sketches included), and (given `expected`) every node holds exactly the
    /// expected ops.
    pub fn check(&self, scope: &Scope, expected: &[BTreeSet<OpId>]) -> Result<(), String> {
        for (i, node) in self.nodes.iter().enumerate() {
            let fresh = Index::from_ops(node.log.values());
            if fresh.root(scope) != node.index.root(scope) || fresh.len() != node.index.len() {
                return Err(format!("node {i}: index does not match its log"));
            }
            node.index
                .check_sketch_caches()
                .map_err(|e| format!("node {i}: {e}"))?;
            let got: BTreeSet<OpId> = node.log.keys().copied().collect();
            if got != expected[i] {
                let missing = expected[i].difference(&got).count();
                let extra = got.difference(&expected[i]).count();
                return Err(format!(
                    "node {i}: {missing} ops missing, {extra} unexpected"
                ));
            }
        }
        Ok(())
    }
}

/// Ops `1000 + i` of collection "a" for each `i` of `range`, by replicas 1-3, of about 40 bytes.
pub fn ops(range: impl Iterator<Item = u64>) -> Vec<Op> {
    range.map(|i| op("a", 1000 + i, 1 + i % 3, 40)).collect()
}

/// Two sessions of the default config over `scope`, on indexes `a` and `b`.
pub fn session_pair(a: &Index, b: &Index, scope: &Scope) -> (Session, Session) {
    (
        Session::new(0, scope.clone(), Config::default(), a),
        Session::new(0, scope.clone(), Config::default(), b),
    )
}
