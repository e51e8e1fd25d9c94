//! Reconciling op logs between peers, with no IO.
//!
//! This crate will hold a Merkle index over the op log in `OpId` order whose shape depends only
//! on the set of ops, the wire messages, and a `Session` state machine in the style of
//! quinn-proto: `handle_message(now, msg)`, `handle_timeout(now)`, `poll_transmit()`,
//! `poll_event()`, `poll_timeout()`. Any transport drives it by moving bytes; time and
//! randomness are arguments.
