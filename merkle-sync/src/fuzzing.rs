//! Internals for the fuzz targets in `fuzz/`, compiled only under `cfg(fuzzing)`.

use crate::MessageError;
use crate::message::Message;

/// A decoded wire message, opaque except for comparing and re-encoding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMessage(Message);

impl WireMessage {
    /// Decodes one message as a session does.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Message::decode(bytes).map(Self)
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.0.encode()
    }
}
