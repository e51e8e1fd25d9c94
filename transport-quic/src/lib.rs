//! weft over QUIC.
//!
//! This crate will hold the quinn endpoint with rustls (ring provider), self-signed peer
//! identities made with rcgen, authorization of peers per collection, the driver that moves
//! bytes between QUIC streams and `merkle_sync` sessions, live push of new ops, and presence.
//! It is the one library crate (besides `hlc`'s system clock) that reads real time.
#![allow(
    clippy::disallowed_methods,
    reason = "the transport drives sessions with real time"
)]
