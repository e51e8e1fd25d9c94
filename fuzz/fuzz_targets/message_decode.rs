//! Sync messages from untrusted bytes: decoding never panics or over-allocates, and whatever
//! decodes encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merkle_sync::fuzzing::WireMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = WireMessage::decode(data) {
        let bytes = msg.encode();
        assert_eq!(WireMessage::decode(&bytes).as_ref(), Ok(&msg));
    }
});
