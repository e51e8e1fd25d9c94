//! Sync messages from untrusted bytes: decoding never panics or over-allocates, whatever
//! decodes encodes to bytes that decode to the same message, and every message (an ops frame
//! too, whose ops must be in their canonical encoding) has one encoding: the bytes it was
//! decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merkle_sync::fuzzing::WireMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = WireMessage::decode(data) {
        let bytes = msg.encode();
        assert_eq!(WireMessage::decode(&bytes).as_ref(), Ok(&msg));
        assert_eq!(bytes, data, "a message with two encodings");
    }
});
