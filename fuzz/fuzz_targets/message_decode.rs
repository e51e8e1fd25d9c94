//! Sync messages from untrusted bytes: decoding never panics or over-allocates, whatever
//! decodes encodes to bytes that decode to the same message, and every message but an ops
//! frame (whose ops are postcard's, which takes over-long varints) has one encoding: the
//! bytes it was decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merkle_sync::fuzzing::WireMessage;

/// The tag of an ops frame.
const TAG_OPS: u8 = 6;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = WireMessage::decode(data) {
        let bytes = msg.encode();
        assert_eq!(WireMessage::decode(&bytes).as_ref(), Ok(&msg));
        if data[0] != TAG_OPS {
            assert_eq!(bytes, data, "a message with two encodings");
        }
    }
});
