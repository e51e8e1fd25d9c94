//! How a session reads its log to fill ops frames: stored bytes and encoded ops give the same
//! frames, a push fills each frame to its size in id order and loses nothing, and an op the
//! log cannot give, or one too large for any peer, ends the push with an error naming it.

mod harness;

use std::collections::BTreeMap;

use crdt_core::{Op, OpId};
use harness::{ops, session_pair};
use merkle_sync::{Index, Scope, Session, SessionError};

#[test]
fn frames_from_stored_bytes_equal_frames_from_ops() {
    use crdt_core::{MemoryStorage, Storage};
    use merkle_sync::StorageSource;
    let all = ops(0..3000);
    let log: BTreeMap<OpId, Op> = all.iter().map(|o| (o.id, o.clone())).collect();
    let mut store = MemoryStorage::new();
    store.append(&all).unwrap();
    let index = Index::from_ops(&all);
    let behind = Index::from_ops(&all[..100]);
    let scope = Scope::new(["a"]);
    // Two identical senders, one reading ops (and encoding them), one lending stored bytes.
    let mut frames: [Vec<Vec<u8>>; 2] = Default::default();
    for (k, out) in frames.iter_mut().enumerate() {
        let (mut ahead, mut peer) = session_pair(&index, &behind, &scope);
        while let Some(m) = peer.poll_transmit(0, &behind, &log).unwrap() {
            ahead.handle_message(50, &m, &index).unwrap();
        }
        loop {
            let m = if k == 0 {
                ahead.poll_transmit(50, &index, &log).unwrap()
            } else {
                ahead
                    .poll_transmit(50, &index, &StorageSource(&store))
                    .unwrap()
            };
            let Some(m) = m else { break };
            out.push(m);
        }
    }
    assert_eq!(frames[0], frames[1]);
    let sent: usize = frames[1]
        .iter()
        .filter(|m| m.first() == Some(&6))
        .map(|m| crdt_core::codec::decode_ops(&m[1..]).unwrap().len())
        .sum();
    assert_eq!(sent, 2900, "the push is the whole tail");
}

#[test]
fn a_push_fills_each_frame_to_its_size_in_id_order_and_loses_nothing() {
    use crdt_core::{MemoryStorage, Storage};
    use merkle_sync::{Config, StorageSource};
    // Ops of about 40 to 160 bytes, so that frames hold from one op to about 1,500.
    let all: Vec<Op> = (0..4000u64)
        .map(|i| harness::op("a", 1000 + i, 1 + i % 3, (i * 37 % 120) as usize))
        .collect();
    let mut store = MemoryStorage::new();
    store.append(&all).unwrap();
    let index = Index::from_ops(&all);
    let empty = Index::new();
    let scope = Scope::new(["a"]);
    for max in [150, 4_000, 25_000, 40_000, 64 * 1024, 200_000] {
        let mut config = Config::default();
        config.max_frame_bytes = max;
        let mut ahead = Session::new(0, scope.clone(), config, &index);
        let mut peer = Session::new(0, scope.clone(), Config::default(), &empty);
        while let Some(m) = peer
            .poll_transmit(0, &empty, &StorageSource(&store))
            .unwrap()
        {
            ahead.handle_message(50, &m, &index).unwrap();
        }
        let mut frames: Vec<Vec<Op>> = Vec::new();
        while let Some(m) = ahead
            .poll_transmit(50, &index, &StorageSource(&store))
            .unwrap()
        {
            if m.first() == Some(&6) {
                frames.push(crdt_core::codec::decode_ops(&m[1..]).unwrap());
            }
        }
        let sent: Vec<&Op> = frames.iter().flatten().collect();
        assert_eq!(sent.len(), all.len(), "max {max}: every op once");
        assert!(
            sent.iter().zip(&all).all(|(a, b)| *a == b),
            "max {max}: in id order"
        );
        let body = |o: &Op| crdt_core::codec::encode_op(o).len() - 1;
        for (i, frame) in frames.iter().enumerate() {
            let len: usize = frame.iter().map(body).sum();
            assert!(
                len <= max || frame.len() == 1,
                "max {max}: frame {i} too large"
            );
            if let Some(next) = frames.get(i + 1).and_then(|f| f.first()) {
                assert!(len + body(next) > max, "max {max}: frame {i} not full");
            }
        }
        if max >= 40_000 {
            assert!(
                frames.iter().any(|f| f.len() > 300),
                "max {max}: frames of hundreds of ops"
            );
        }
    }
}

/// A store that fails to read one op (a damaged disk, say) and lacks nothing else.
struct Failing {
    inner: crdt_core::MemoryStorage,
    bad: OpId,
}

impl crdt_core::Storage for Failing {
    fn replica_id(&self) -> Result<Option<crdt_core::ReplicaId>, crdt_core::StorageError> {
        self.inner.replica_id()
    }
    fn set_replica_id(&mut self, id: crdt_core::ReplicaId) -> Result<(), crdt_core::StorageError> {
        self.inner.set_replica_id(id)
    }
    fn append(&mut self, ops: &[Op]) -> Result<(), crdt_core::StorageError> {
        self.inner.append(ops)
    }
    fn contains(&self, id: OpId) -> Result<bool, crdt_core::StorageError> {
        self.inner.contains(id)
    }
    fn get(&self, id: OpId) -> Result<Option<Op>, crdt_core::StorageError> {
        if id == self.bad {
            return Err(crdt_core::StorageError::Backend("bad sector".into()));
        }
        self.inner.get(id)
    }
    fn scan(&self) -> crdt_core::OpIter<'_> {
        self.inner.scan()
    }
    fn ops_after(&self, vv: &crdt_core::VersionVector) -> crdt_core::OpIter<'_> {
        self.inner.ops_after(vv)
    }
    fn len(&self) -> Result<u64, crdt_core::StorageError> {
        self.inner.len()
    }
}

#[test]
fn an_op_the_log_cannot_give_ends_the_push_with_an_error_naming_it() {
    // The index holds 50 ops; the log lacks one, or fails to read one. Filling the frame that
    // holds it stops with an error naming that op, whichever way the log is read.
    use crdt_core::{MemoryStorage, Storage};
    use merkle_sync::StorageSource;
    let all = ops(0..50);
    let index = Index::from_ops(&all);
    let empty = Index::new();
    let scope = Scope::new(["a"]);
    let gone = all[20].id;
    let mut lacking = MemoryStorage::new();
    lacking
        .append(
            &all.iter()
                .filter(|o| o.id != gone)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut failing = Failing {
        inner: MemoryStorage::new(),
        bad: gone,
    };
    failing.append(&all).unwrap();
    let map: BTreeMap<OpId, Op> = all
        .iter()
        .filter(|o| o.id != gone)
        .map(|o| (o.id, o.clone()))
        .collect();
    type Transmit = Result<Option<Vec<u8>>, SessionError>;
    let push = |source: &dyn Fn(&mut Session) -> Transmit| {
        let (mut s, mut peer) = session_pair(&index, &empty, &scope);
        let hello = peer
            .poll_transmit(0, &empty, &BTreeMap::new())
            .unwrap()
            .unwrap();
        while source(&mut s).unwrap().is_some() {}
        s.handle_message(1, &hello, &index).unwrap();
        loop {
            match source(&mut s) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the push ended without an error"),
                Err(e) => return e,
            }
        }
    };
    for err in [
        push(&|s| s.poll_transmit(1, &index, &StorageSource(&lacking))),
        push(&|s| s.poll_transmit(1, &index, &map)),
    ] {
        assert!(
            matches!(err, SessionError::Missing(id) if id == gone),
            "{err}"
        );
    }
    let err = push(&|s| s.poll_transmit(1, &index, &StorageSource(&failing)));
    match &err {
        SessionError::Source(e) => {
            assert_eq!(e.id, gone);
            assert!(err.to_string().contains("bad sector"), "{err}");
        }
        other => panic!("{other}"),
    }
}

/// A log that lends a made-up encoding of `len` bytes for one id.
struct Oversized {
    log: BTreeMap<OpId, Op>,
    id: OpId,
    len: usize,
}

impl merkle_sync::OpSource for Oversized {
    fn op(&self, id: OpId) -> Result<Option<Op>, merkle_sync::SourceError> {
        Ok(self.log.get(&id).cloned())
    }

    fn encoded(
        &self,
        id: OpId,
    ) -> Result<Option<std::borrow::Cow<'_, [u8]>>, merkle_sync::SourceError> {
        if id == self.id {
            return Ok(Some(vec![0; self.len].into()));
        }
        self.log.encoded(id)
    }
}

#[test]
fn an_op_no_peer_could_decode_ends_the_session_with_a_clear_error() {
    // Ops frames of one op may reach 64 MiB + 1: the op's bytes plus the tag, the format
    // version and the count, for an op of `MAX_OP_BYTES` with its version byte. One byte more
    // and the peer would refuse the frame, so the sender says which op is too large instead of
    // sending it. (`len` is the stored encoding, without the version byte.)
    let limit = crdt_core::codec::MAX_OP_BYTES;
    for (len, fits) in [(limit - 1, true), (limit, false)] {
        let log: BTreeMap<OpId, Op> = ops(0..20).into_iter().map(|o| (o.id, o)).collect();
        let big = *log.keys().nth(7).unwrap();
        let index = Index::from_ops(log.values());
        let source = Oversized { log, id: big, len };
        let scope = Scope::new(["a"]);
        let empty = Index::new();
        let (mut s, mut peer) = session_pair(&index, &empty, &scope);
        let hello = peer
            .poll_transmit(0, &empty, &BTreeMap::new())
            .unwrap()
            .unwrap();
        while s.poll_transmit(0, &index, &source).unwrap().is_some() {}
        s.handle_message(1, &hello, &index).unwrap();
        let mut frames = Vec::new();
        let err = loop {
            match s.poll_transmit(1, &index, &source) {
                Ok(Some(m)) => frames.push(m),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if fits {
            assert!(err.is_none(), "{err:?}");
            let frame = frames
                .iter()
                .find(|f| f.len() > limit)
                .expect("the big frame");
            assert_eq!(frame.len(), merkle_sync::MAX_OPS_FRAME_BYTES);
            // The peer takes the frame as far as its size goes: it fails on the made-up op
            // bytes, not on the frame's size.
            let e = peer.handle_message(2, frame, &empty).unwrap_err();
            assert!(
                !matches!(
                    e,
                    SessionError::Message(merkle_sync::MessageError::TooLarge(_))
                ),
                "{e:?}"
            );
        } else {
            match err {
                Some(SessionError::OpTooLarge { id, bytes }) => {
                    assert_eq!((id, bytes), (big, limit + 1));
                }
                other => panic!("{other:?}"),
            }
            assert!(
                s.poll_transmit(1, &index, &source).is_err(),
                "failed for good"
            );
        }
    }
}
