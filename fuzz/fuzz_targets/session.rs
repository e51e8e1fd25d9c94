//! A sync session fed arbitrary messages and timeouts, beside an honest peer: it never panics,
//! never sends ops outside its scope, and once it fails it stays failed.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
use libfuzzer_sys::fuzz_target;
use merkle_sync::{Config, Event, Index, Scope, Session, SessionError};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Raw bytes, as if from the peer.
    Raw(Vec<u8>),
    /// The honest peer's next message, delivered.
    FromPeer,
    /// The honest peer's next message with one byte flipped.
    FromPeerFlipped { at: u16, xor: u8 },
    /// The honest peer's next message, lost.
    DropFromPeer,
    /// Our next message, delivered to the honest peer.
    ToPeer,
    /// Time passes; both sides' timers fire if due.
    Wait(u16),
}

fn op(ms: u64, replica: u64, collection: &str) -> Op {
    Op {
        id: OpId::new(
            hlc::Timestamp::new(ms, 0).expect("a small timestamp"),
            ReplicaId::new(replica),
        ),
        schema_version: 1,
        collection: collection.into(),
        key: format!("k{ms}"),
        field: "f".into(),
        deps: vec![],
        payload: Payload::Write(Value::Int(ms as i64)),
    }
}

struct Side {
    session: Session,
    index: Index,
    log: BTreeMap<OpId, Op>,
}

impl Side {
    fn new(ops: impl IntoIterator<Item = Op>, scope: &Scope) -> Self {
        let log: BTreeMap<OpId, Op> = ops.into_iter().map(|op| (op.id, op)).collect();
        let index = Index::from_ops(log.values());
        let mut config = Config::default();
        config.max_frame_bytes = 256;
        config.symbols_per_message = 8;
        config.max_sketch_symbols = 4096;
        config.max_retries = 3;
        let session = Session::new(0, scope.clone(), config, &index);
        Self {
            session,
            index,
            log,
        }
    }

    fn transmit(&mut self, now: u64) -> Result<Option<Vec<u8>>, SessionError> {
        self.session.poll_transmit(now, &self.index, &self.log)
    }

    fn receive(&mut self, now: u64, bytes: &[u8], scope: &Scope) -> Result<(), SessionError> {
        let r = self.session.handle_message(now, bytes, &self.index);
        self.events(scope);
        r
    }

    fn events(&mut self, scope: &Scope) {
        while let Some(event) = self.session.poll_event() {
            if let Event::Ops(ops) = event {
                for op in ops.to_ops().expect("a session hands out ops that decode") {
                    assert!(scope.contains(&op.collection), "an op outside the scope");
                    self.index.insert_op(&op);
                    self.log.insert(op.id, op);
                }
            }
        }
    }
}

fuzz_target!(|inputs: Vec<Input>| {
    let scope = Scope::new(["a", "b"]);
    // A small fixed index on each side: shared ops, ops of their own, one outside the scope.
    let shared = (0..20).map(|ms| op(ms, 1, if ms % 3 == 0 { "b" } else { "a" }));
    let mut us = Side::new(
        shared
            .clone()
            .chain([op(100, 2, "a"), op(101, 2, "secret")]),
        &scope,
    );
    let mut peer = Side::new(shared.filter(|o| o.id.ts.millis() % 4 != 1), &scope);
    peer.log.insert(op(200, 3, "b").id, op(200, 3, "b"));
    peer.index.insert_op(&op(200, 3, "b"));
    let mut now = 0u64;
    let mut failed = false;
    for input in inputs.into_iter().take(256) {
        let result = match input {
            Input::Raw(bytes) => us.receive(now, &bytes, &scope),
            Input::FromPeer | Input::FromPeerFlipped { .. } | Input::DropFromPeer => {
                match peer.transmit(now) {
                    Ok(Some(mut bytes)) => {
                        if let Input::FromPeerFlipped { at, xor } = input {
                            let len = bytes.len().max(1);
                            if let Some(b) = bytes.get_mut(usize::from(at) % len) {
                                *b ^= xor;
                            }
                        }
                        if matches!(input, Input::DropFromPeer) {
                            Ok(())
                        } else {
                            us.receive(now, &bytes, &scope)
                        }
                    }
                    _ => Ok(()),
                }
            }
            Input::ToPeer => match us.transmit(now) {
                Ok(Some(bytes)) => {
                    let _ = peer.receive(now, &bytes, &scope);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Input::Wait(ms) => {
                now += u64::from(ms);
                let _ = peer.session.handle_timeout(now, &peer.index);
                us.session.handle_timeout(now, &us.index)
            }
        };
        if failed {
            assert!(
                matches!(result, Ok(()) | Err(SessionError::Closed)),
                "a failed session came back: {result:?}"
            );
            assert!(us.session.poll_timeout().is_none());
        }
        if result.is_err() {
            failed = true;
        }
    }
    // Whatever we sent the peer stayed in scope (checked as the peer applied it); the op
    // outside the scope never reached it.
    assert!(!peer.log.values().any(|op| op.collection == "secret"));
});
