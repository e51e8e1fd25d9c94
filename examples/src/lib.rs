//! Runnable examples of weft, one file each under `examples/examples/`.
//!
//! Run one with `cargo run -p examples --example NAME`:
//!
//! - `clock`: two replicas' hybrid logical clocks exchanging timestamps while one system clock
//!   jumps backwards, and a peer whose clock is too far ahead being refused.
