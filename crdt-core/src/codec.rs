//! The versioned byte encoding of ops, for the wire and the disk.
//!
//! An encoded op is one format-version byte followed by the op in postcard. A batch is the
//! version byte, a varint count, and the ops in postcard without their own version bytes. The
//! layout is written down byte by byte in `docs/wire-format.md` and pinned by golden fixtures.
//!
//! Decoding takes untrusted bytes: it never panics, and it allocates no more than the input can
//! justify (postcard reads each length before the bytes it covers and fails when they are not
//! there; sequence pre-allocation is capped by serde).

use crate::{Op, OpId};

mod encoded;

pub use encoded::{EncodedOp, EncodedOps};

/// The op encoding's format version, the first byte of every encoded op or batch.
pub const FORMAT_VERSION: u8 = 1;

/// Inputs larger than this are refused before decoding: 64 MiB.
pub const MAX_ENCODED_BYTES: usize = 64 << 20;

/// The largest op a replica writes or accepts, in [`encode_op`]'s bytes (the version byte
/// included): one byte under [`MAX_ENCODED_BYTES`], so that a batch of that op alone (version
/// byte, count, op) is still no larger than what [`decode_ops`] takes. An op within it can be
/// stored, read back and sent to a peer; a larger one is refused before it is stored
/// ([`InvalidOp::TooLarge`](crate::InvalidOp::TooLarge)).
pub const MAX_OP_BYTES: usize = MAX_ENCODED_BYTES - 1;

/// The length of `op`'s encoding ([`encode_op`], the version byte included), counted without
/// writing it.
pub fn encoded_len(op: &Op) -> usize {
    // Counting cannot fail: ops serialize without errors (as `append_postcard` relies on).
    postcard::serialize_with_flavor(op, postcard::ser_flavors::Size::default())
        .map_or(usize::MAX, |n| n.saturating_add(1))
}

/// Refuses an op whose encoding is larger than [`MAX_OP_BYTES`].
pub(crate) fn check_op_size(op: &Op) -> Result<(), crate::InvalidOp> {
    match encoded_len(op) {
        bytes if bytes > MAX_OP_BYTES => Err(crate::InvalidOp::TooLarge { id: op.id, bytes }),
        _ => Ok(()),
    }
}

/// Bytes that are not a valid encoding of ops.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is empty.
    #[error("empty input: expected a format version byte")]
    Empty,
    /// The format version is one this build cannot read.
    #[error("unknown op format version {0} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    /// The input is larger than [`MAX_ENCODED_BYTES`].
    #[error("input of {0} bytes is larger than the {MAX_ENCODED_BYTES}-byte limit")]
    TooLarge(usize),
    /// The bytes do not decode.
    #[error("malformed op encoding: {0}")]
    Malformed(String),
    /// A varint, starting at this byte of the input, is not in its shortest form: postcard
    /// would read it, but it is not what [`encode_ops`] writes, and [`EncodedOps`] takes only
    /// the one encoding of each batch.
    #[error("a varint at byte {0} is not in its shortest form")]
    NotCanonical(usize),
    /// Bytes are left over after the last op.
    #[error("{0} unexpected bytes after the last op")]
    Trailing(usize),
}

impl From<postcard::Error> for DecodeError {
    fn from(e: postcard::Error) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// A postcard output that appends to a `Vec` a slice at a time (`postcard::to_extend` copies
/// byte by byte, which made it the larger part of encoding an op).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the postcard encoding of `value` to `out`.
pub(crate) fn append_postcard<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    postcard::serialize_with_flavor(value, Append(out))
        .expect("postcard cannot fail to serialize into a Vec");
}

/// Encodes one op: version byte, then postcard.
pub fn encode_op(op: &Op) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_op_into(op, &mut out);
    out
}

/// Appends the encoding of one op ([`encode_op`]) to `out`, so that many ops can share one
/// buffer (the durable store encodes a commit's ops back to back), or one buffer can serve
/// many encodings without an allocation each.
pub fn encode_op_into(op: &Op, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    append_postcard(op, out);
}

/// Decodes one op encoded by [`encode_op`], rejecting trailing bytes.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    let body = check_header(bytes)?;
    let (op, rest) = postcard::take_from_bytes::<Op>(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(op)
}

/// The id and collection of an op from the postcard bytes of its encoding (an [`encode_op`]
/// without the version byte, as [`Storage::get_encoded`](crate::Storage::get_encoded) gives
/// it), read from the front without decoding the rest: what indexing stored bytes needs.
pub fn op_id_and_collection(body: &[u8]) -> Result<(OpId, &str), DecodeError> {
    // Op's first three fields, in order (postcard encodes a struct as the tuple of its
    // fields); `op_id_and_collection_read_the_front_of_an_op` holds the two to the same order.
    let ((id, _schema_version, collection), _rest) =
        postcard::take_from_bytes::<(OpId, u32, &str)>(body)?;
    Ok((id, collection))
}

/// Encodes a batch of ops: version byte, varint count, then each op in postcard.
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    append_postcard(ops, &mut out);
    out
}

/// Decodes a batch encoded by [`encode_ops`], rejecting trailing bytes.
pub fn decode_ops(bytes: &[u8]) -> Result<Vec<Op>, DecodeError> {
    let body = check_header(bytes)?;
    let (ops, rest) = postcard::take_from_bytes::<Vec<Op>>(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(ops)
}

fn check_header(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&FORMAT_VERSION, body)) => Ok(body),
        Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
    }
}
