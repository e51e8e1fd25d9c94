//! The simulated network: a link (two sessions) between every pair of replicas, messages in
//! flight with latency, loss, duplication and partitions, all in virtual time.

use merkle_sync::{Config as SyncConfig, Event, Scope, Session, SessionError, StorageSource};

use super::world::{COLLECTIONS, Node};
use super::{Faults, SimRng, Summary, SyncSettings};

/// A connection between two replicas: one session on each side. `None` while it is down.
struct Link {
    a: usize,
    b: usize,
    /// Incarnation: messages of an older connection are discarded on arrival.
    generation: u64,
    sessions: Option<[Session; 2]>,
    reconnect_at: Option<u64>,
}

struct InFlight {
    at: u64,
    seq: u64,
    link: usize,
    generation: u64,
    /// Side receiving it (0: `a`, 1: `b`).
    to: usize,
    bytes: Vec<u8>,
}

/// After a link fails or a replica restarts, the link comes back this much later.
const RECONNECT_MS: u64 = 500;

/// The replicas, the links between them and the wire.
pub(crate) struct World {
    pub(crate) nodes: Vec<Node>,
    links: Vec<Link>,
    flight: Vec<InFlight>,
    seq: u64,
    pub(crate) now: u64,
    /// Per replica, its clock's offset from virtual time.
    pub(crate) skew: Vec<i64>,
    pub(crate) faults: Faults,
    /// Replicas in the mask are cut off from the others until the time given.
    pub(crate) partition: Option<(u64, u64)>,
    rng: SimRng,
    scope: Scope,
    config: SyncConfig,
    pub(crate) hlc: hlc::Config,
    pub(crate) summary: Summary,
    /// Per replica, the fate of its next reboot's unsynced writes.
    pub(crate) fates: Vec<u64>,
}

impl World {
    pub(crate) fn new(
        nodes: Vec<Node>,
        faults: Faults,
        sync: SyncSettings,
        hlc: hlc::Config,
        seed: u64,
    ) -> Self {
        let mut config = SyncConfig::default();
        config.max_frame_bytes = sync.max_frame_bytes;
        config.symbols_per_message = sync.symbols_per_message;
        config.retransmit_after = sync.retransmit_after;
        let n = nodes.len();
        let mut links = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                links.push(Link {
                    a,
                    b,
                    generation: 0,
                    sessions: None,
                    reconnect_at: Some(0),
                });
            }
        }
        Self {
            nodes,
            links,
            flight: Vec::new(),
            seq: 0,
            now: 0,
            skew: vec![0; n],
            faults,
            partition: None,
            rng: SimRng::new(seed ^ 0x6e65_7477_6f72_6b00),
            scope: Scope::new(COLLECTIONS),
            config,
            hlc,
            summary: Summary::default(),
            fates: (0..n as u64).collect(),
        }
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Sets every replica's clock from virtual time and its skew.
    pub(crate) fn set_clocks(&self) {
        for (node, skew) in self.nodes.iter().zip(&self.skew) {
            let t = super::START_MS
                .saturating_add_signed(*skew)
                .saturating_add(self.now);
            node.clock.set(t);
        }
    }

    fn cut_off(&self, x: usize, y: usize) -> bool {
        match self.partition {
            Some((mask, until)) if self.now < until => ((mask >> x) & 1) != ((mask >> y) & 1),
            _ => false,
        }
    }

    /// Takes the link down; it reconnects after [`RECONNECT_MS`].
    fn drop_link(&mut self, l: usize) {
        let link = &mut self.links[l];
        if link.sessions.take().is_some() {
            link.generation += 1;
        }
        link.reconnect_at = Some(self.now + RECONNECT_MS);
    }

    /// A session failed: a timeout takes the link down (it reconnects later); anything else
    /// between honest peers is a failure of the simulation.
    fn session_failed(&mut self, l: usize, side: usize, e: SessionError) -> Result<(), String> {
        match e {
            SessionError::TimedOut(_) | SessionError::Closed => {
                self.summary.timeouts += 1;
                self.drop_link(l);
                Ok(())
            }
            // Reading the log of a replica whose disk just died.
            SessionError::Source(_) if self.dead(l) => {
                self.drop_link(l);
                Ok(())
            }
            e => {
                let link = &self.links[l];
                let (me, peer) = if side == 0 {
                    (link.a, link.b)
                } else {
                    (link.b, link.a)
                };
                Err(format!(
                    "session of replica {me} with {peer} failed at t={}: {e}",
                    self.now
                ))
            }
        }
    }

    fn dead(&self, l: usize) -> bool {
        let link = &self.links[l];
        self.nodes[link.a].disk.is_dead() || self.nodes[link.b].disk.is_dead()
    }

    /// Moves every queued message of every session onto the wire, with the faults.
    fn flush(&mut self) -> Result<(), String> {
        for l in 0..self.links.len() {
            for side in 0..2 {
                loop {
                    let link = &mut self.links[l];
                    let (me, peer) = if side == 0 {
                        (link.a, link.b)
                    } else {
                        (link.b, link.a)
                    };
                    let Some(sessions) = link.sessions.as_mut() else {
                        break;
                    };
                    let node = &self.nodes[me];
                    let source = StorageSource(node.replica.storage());
                    let out = sessions[side].poll_transmit(self.now, &node.index, &source);
                    let bytes = match out {
                        Ok(Some(bytes)) => bytes,
                        Ok(None) => break,
                        Err(e) => {
                            self.session_failed(l, side, e)?;
                            break;
                        }
                    };
                    let generation = link.generation;
                    self.summary.messages += 1;
                    self.summary.bytes += bytes.len() as u64;
                    let copies = if self.rng.chance(self.faults.duplicate) {
                        self.summary.duplicated += 1;
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        if self.cut_off(me, peer) || self.rng.chance(self.faults.drop) {
                            self.summary.dropped += 1;
                            continue;
                        }
                        let (lo, hi) = self.faults.latency;
                        let at = self.now + lo + self.rng.below(hi.saturating_sub(lo) + 1);
                        self.seq += 1;
                        self.flight.push(InFlight {
                            at,
                            seq: self.seq,
                            link: l,
                            generation,
                            to: 1 - side,
                            bytes: bytes.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, m: InFlight) -> Result<(), String> {
        let link = &mut self.links[m.link];
        if link.generation != m.generation {
            return Ok(());
        }
        let me = if m.to == 0 { link.a } else { link.b };
        let Some(sessions) = link.sessions.as_mut() else {
            return Ok(());
        };
        let session = &mut sessions[m.to];
        let r = session.handle_message(self.now, &m.bytes, &self.nodes[me].index);
        let mut batches = Vec::new();
        while let Some(e) = session.poll_event() {
            if let Event::Ops(ops) = e {
                batches.push(ops);
            }
        }
        if let Err(e) = r {
            return self.session_failed(m.link, m.to, e);
        }
        for ops in batches {
            self.summary.ops_received += ops.len() as u64;
            let ops = ops
                .to_ops()
                .map_err(|e| format!("ops from a peer do not decode: {e}"))?;
            let drift = self.nodes[me].apply_remote(ops)?;
            self.summary.drift_rejections += drift;
        }
        Ok(())
    }

    /// Restarts a replica whose disk lost power, and takes its links down.
    pub(crate) fn reboot_dead(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].disk.is_dead() {
                self.reboot(i)?;
            }
        }
        Ok(())
    }

    /// Cuts the power of replica `i` now and restarts it.
    pub(crate) fn reboot(&mut self, i: usize) -> Result<(), String> {
        let fate = self.fates[i];
        self.nodes[i]
            .reboot(fate, self.hlc)
            .map_err(|e| format!("replica {i} at t={}: {e}", self.now))?;
        self.summary.crashes += 1;
        for l in 0..self.links.len() {
            if self.links[l].a == i || self.links[l].b == i {
                self.drop_link(l);
            }
        }
        Ok(())
    }

    fn next_event(&self) -> Option<u64> {
        let msg = self.flight.iter().map(|m| m.at).min();
        let timer = self
            .links
            .iter()
            .filter_map(|l| l.sessions.as_ref())
            .flat_map(|s| s.iter().filter_map(Session::poll_timeout))
            .min();
        let reconnect = self.links.iter().filter_map(|l| l.reconnect_at).min();
        [msg, timer, reconnect].into_iter().flatten().min()
    }

    /// Runs the network until virtual time `until`.
    pub(crate) fn advance(&mut self, until: u64) -> Result<(), String> {
        loop {
            self.flush()?;
            let Some(next) = self.next_event().filter(|&t| t <= until) else {
                self.now = self.now.max(until);
                self.set_clocks();
                return Ok(());
            };
            self.now = self.now.max(next);
            self.set_clocks();
            self.summary.events += 1;
            // Deliver everything due, in (time, send order).
            self.flight
                .sort_by_key(|m| std::cmp::Reverse((m.at, m.seq)));
            while self.flight.last().is_some_and(|m| m.at <= self.now) {
                if let Some(m) = self.flight.pop() {
                    self.deliver(m)?;
                    self.reboot_dead()?;
                }
            }
            for l in 0..self.links.len() {
                for side in 0..2 {
                    let link = &mut self.links[l];
                    let me = if side == 0 { link.a } else { link.b };
                    let Some(sessions) = link.sessions.as_mut() else {
                        continue;
                    };
                    if sessions[side].poll_timeout().is_some_and(|t| t <= self.now) {
                        let r = sessions[side].handle_timeout(self.now, &self.nodes[me].index);
                        if let Err(e) = r {
                            self.session_failed(l, side, e)?;
                        }
                    }
                }
            }
            for l in 0..self.links.len() {
                if self.links[l].reconnect_at.is_some_and(|t| t <= self.now) {
                    self.connect(l);
                }
            }
        }
    }

    fn connect(&mut self, l: usize) {
        let link = &mut self.links[l];
        link.reconnect_at = None;
        link.generation += 1;
        let (a, b) = (link.a, link.b);
        let new = |i: usize| {
            Session::new(
                self.now,
                self.scope.clone(),
                self.config.clone(),
                &self.nodes[i].index,
            )
        };
        let sessions = [new(a), new(b)];
        self.links[l].sessions = Some(sessions);
        self.summary.connections += 1;
    }

    /// Whether the network is at rest: every link up, both sessions synced, equal roots on
    /// both ends, nothing in flight.
    pub(crate) fn quiescent(&self) -> bool {
        self.flight.is_empty()
            && self.links.iter().all(|l| {
                l.sessions
                    .as_ref()
                    .is_some_and(|s| s[0].is_synced() && s[1].is_synced())
                    && self.nodes[l.a].index.root(&self.scope)
                        == self.nodes[l.b].index.root(&self.scope)
            })
    }

    /// The state of each link, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        for l in &self.links {
            let state = match &l.sessions {
                None => "down".to_owned(),
                Some(s) => format!("synced {}/{}", s[0].is_synced(), s[1].is_synced()),
            };
            let roots_equal =
                self.nodes[l.a].index.root(&self.scope) == self.nodes[l.b].index.root(&self.scope);
            out += &format!(
                "[{}-{}: {state}, equal roots {roots_equal}, logs {}/{}] ",
                l.a,
                l.b,
                self.nodes[l.a].index.len(),
                self.nodes[l.b].index.len()
            );
        }
        out
    }
}
