//! Timestamps from untrusted bytes: the text parser, the 8-byte form and postcard must never
//! panic, and whatever decodes must encode back to the same thing.
#![no_main]

use hlc::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ts) = text.parse::<Timestamp>() {
            assert_eq!(ts.to_string(), text);
        }
    }
    if let Ok(ts) = Timestamp::try_from(data) {
        assert_eq!(&ts.to_bytes()[..], data);
    }
    if let Ok((ts, rest)) = postcard::take_from_bytes::<Timestamp>(data) {
        assert_eq!(&ts.to_bytes()[..], &data[..data.len() - rest.len()]);
    }
});
