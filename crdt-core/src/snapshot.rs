//! Snapshots of a replica's materialized state, so that opening a large replica loads the
//! state and replays only the ops appended since, instead of every op.
//!
//! A snapshot is one format byte, then postcard of the state: a fingerprint of the schema it
//! was taken under, the version vector, the element counter and every record. Unique indexes
//! are rebuilt and merge handlers rerun on load. A snapshot whose format or schema fingerprint
//! does not match, or that does not decode, is ignored: the replica replays the whole log, which
//! is the truth (the snapshot only saves time).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::VersionVector;
use crate::schema::{ConflictPolicy, FieldKind, PrimaryKey, Schema};
use crate::state::RecordState;

/// The snapshot format, the first byte of every snapshot.
const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
pub(crate) struct StateImage {
    pub(crate) fingerprint: [u8; 32],
    pub(crate) frontier: VersionVector,
    pub(crate) next_seq: u64,
    pub(crate) collections: Vec<(String, Vec<(String, RecordState)>)>,
}

/// Serializes a state image.
pub(crate) fn encode(image: &StateImage) -> Vec<u8> {
    let mut out = vec![FORMAT];
    crate::codec::append_postcard(image, &mut out);
    out
}

/// Decodes a snapshot taken under a schema with this fingerprint, or `None`.
pub(crate) fn decode(bytes: &[u8], fingerprint: &[u8; 32]) -> Option<StateImage> {
    let (&format, body) = bytes.split_first()?;
    if format != FORMAT {
        return None;
    }
    let image: StateImage = postcard::from_bytes(body).ok()?;
    (&image.fingerprint == fingerprint).then_some(image)
}

/// A digest of everything in the schema that decides how ops materialize: collection and
/// field names and positions, kinds, policies, defaults, keys.
pub(crate) fn fingerprint(schema: &Schema) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&schema.version().to_be_bytes());
    for c in schema.collections() {
        h.update(c.name().as_bytes());
        h.update(&[0, matches!(c.primary_key, PrimaryKey::Generated) as u8]);
        for f in c.fields() {
            h.update(f.name().as_bytes());
            h.update(&[0]);
            h.update(crate::schema::kind_name(f.kind()).as_bytes());
            if let FieldKind::Register(crate::ScalarType::Ref(t)) = f.kind() {
                h.update(t.as_bytes());
            }
            let policy = match c.policy_of(f) {
                ConflictPolicy::LastWriterWins => 0,
                ConflictPolicy::Merge(_) => 1,
                ConflictPolicy::Manual => 2,
            };
            h.update(&[policy, f.required as u8, f.unique as u8]);
            if let Some(default) = &f.default {
                h.update(&postcard::to_allocvec(default).unwrap_or_default());
            }
            h.update(&[0xff]);
        }
    }
    *h.finalize().as_bytes()
}

/// Records of an image, by collection, ready to install.
pub(crate) fn records(image: StateImage) -> HashMap<String, Vec<(String, RecordState)>> {
    image.collections.into_iter().collect()
}
