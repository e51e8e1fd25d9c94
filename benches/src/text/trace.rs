//! Editing traces: the sequential and concurrent formats of `../shared/traces/README.md`, read
//! into plain structs.
//!
//! A file is JSON, gzipped or not: the gzip magic bytes decide, not the extension. A sequential
//! trace becomes a degenerate concurrent one, so that every replay goes through one code path:
//! one agent, and each txn's parent is the txn before it.
//!
//! Parsing checks what can be checked without replaying: parents are earlier txns, agents are
//! below `numAgents`, and, for sequential traces, every patch stays inside the document (its
//! length is tracked as the patches go). What only a replay can tell (a concurrent patch out of
//! bounds, an agent editing concurrently with itself) is found by [`super::plan`] or the replay.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::naive::NaiveText;

/// One patch of a txn: delete `del` code points at `pos`, then insert `ins` at `pos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Position in Unicode code points, in the document as the patch's author saw it.
    pub pos: usize,
    /// Code points deleted at `pos`.
    pub del: usize,
    /// Text inserted at `pos` after the deletion.
    pub ins: String,
}

/// One transaction: the patches one agent typed in one go, each seeing the previous one's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// The agent who typed it, below [`Trace::agents`].
    pub agent: usize,
    /// Indexes of earlier txns: the txn was typed on the version holding exactly these and what
    /// they transitively hold. Empty for the empty document.
    pub parents: Vec<usize>,
    /// The patches, in order.
    pub patches: Vec<Patch>,
}

/// Which format a trace file was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One author, one txn after another.
    Sequential,
    /// Several agents typing at once, merging as the parents say.
    Concurrent,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The file name (without directories), for reports.
    pub name: String,
    /// The format it came in.
    pub kind: Kind,
    /// Number of agents: 1 for a sequential trace.
    pub agents: usize,
    /// The txns in order; a txn's parents are always earlier txns.
    pub txns: Vec<Txn>,
    /// What the document must read after every txn, on every replica. `None` only for a prefix
    /// of a concurrent trace ([`Trace::prefix`]), where no naive model can tell.
    pub end_content: Option<String>,
}

/// A trace file that could not be read or is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// The file (or name) the error is about.
    pub file: String,
    /// What is wrong with it.
    pub what: String,
}

impl TraceError {
    fn new(file: &str, what: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            what: what.into(),
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.what)
    }
}

impl std::error::Error for TraceError {}

/// The two formats share one shape; which fields must be there depends on `kind`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    kind: Option<String>,
    num_agents: Option<usize>,
    start_content: Option<String>,
    end_content: String,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    parents: Option<Vec<usize>>,
    agent: Option<usize>,
    patches: Vec<(usize, usize, String)>,
}

/// The first bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Trace {
    /// Reads and parses the trace file at `path`, gunzipping it first if it starts with the gzip
    /// magic bytes.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| TraceError::new(&shown, format!("cannot read: {e}")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(shown.clone());
        Self::parse(&name, &bytes).map_err(|e| TraceError { file: shown, ..e })
    }

    /// Parses a trace from the bytes of a file called `name`.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, TraceError> {
        let unzipped;
        let json = if bytes.starts_with(&GZIP_MAGIC) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| TraceError::new(name, format!("bad gzip data: {e}")))?;
            unzipped = out;
            &unzipped[..]
        } else {
            bytes
        };
        let raw: RawTrace = serde_json::from_slice(json)
            .map_err(|e| TraceError::new(name, format!("not a trace: {e}")))?;
        Self::from_raw(name, raw)
    }

    fn from_raw(name: &str, raw: RawTrace) -> Result<Self, TraceError> {
        let err = |what: String| TraceError::new(name, what);
        let kind = match raw.kind.as_deref() {
            None | Some("sequential") => Kind::Sequential,
            Some("concurrent") => Kind::Concurrent,
            Some(other) => return Err(err(format!("unknown kind {other:?}"))),
        };
        let agents = match kind {
            Kind::Sequential => 1,
            Kind::Concurrent => match raw.num_agents {
                Some(n) if n > 0 => n,
                Some(_) => return Err(err("numAgents is 0".into())),
                None => return Err(err("a concurrent trace needs numAgents".into())),
            },
        };
        let start = raw.start_content.unwrap_or_default();
        if kind == Kind::Concurrent && !start.is_empty() {
            return Err(err(
                "a concurrent trace starts from the empty document (no startContent)".into(),
            ));
        }
        let mut len = start.chars().count();
        // A sequential trace's start content becomes a first txn that inserts it.
        let mut txns = Vec::with_capacity(raw.txns.len() + usize::from(!start.is_empty()));
        if !start.is_empty() {
            txns.push(Txn {
                agent: 0,
                parents: Vec::new(),
                patches: vec![Patch {
                    pos: 0,
                    del: 0,
                    ins: start,
                }],
            });
        }
        for (index, raw_txn) in raw.txns.into_iter().enumerate() {
            let i = txns.len();
            let patches: Vec<Patch> = raw_txn
                .patches
                .into_iter()
                .map(|(pos, del, ins)| Patch { pos, del, ins })
                .collect();
            let txn = match kind {
                Kind::Sequential => {
                    for (p, patch) in patches.iter().enumerate() {
                        len = sequential_len(len, patch).ok_or_else(|| {
                            err(format!(
                                "txn {index}, patch {p}: deletes {}..{} or inserts at {} in a \
                                 document of {len} code points",
                                patch.pos,
                                patch.pos.saturating_add(patch.del),
                                patch.pos
                            ))
                        })?;
                    }
                    Txn {
                        agent: 0,
                        parents: i.checked_sub(1).into_iter().collect(),
                        patches,
                    }
                }
                Kind::Concurrent => {
                    let parents = raw_txn
                        .parents
                        .ok_or_else(|| err(format!("txn {index} has no parents field")))?;
                    if let Some(bad) = parents.iter().find(|&&p| p >= i) {
                        return Err(err(format!(
                            "txn {index} has parent {bad}, which is not an earlier txn"
                        )));
                    }
                    let agent = raw_txn
                        .agent
                        .ok_or_else(|| err(format!("txn {index} has no agent field")))?;
                    if agent >= agents {
                        return Err(err(format!(
                            "txn {index} is by agent {agent}, but numAgents is {agents}"
                        )));
                    }
                    Txn {
                        agent,
                        parents,
                        patches,
                    }
                }
            };
            txns.push(txn);
        }
        if kind == Kind::Sequential {
            let end = raw.end_content.chars().count();
            if end != len {
                return Err(err(format!(
                    "the txns leave {len} code points, but endContent has {end}"
                )));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            agents,
            txns,
            end_content: Some(raw.end_content),
        })
    }

    /// The first `n` txns (all of them if there are fewer). A prefix is closed under parents,
    /// since parents are earlier txns. Its end content is what the naive model
    /// ([`NaiveText`]) computes for a sequential trace, and unknown (`None`) for a concurrent one.
    pub fn prefix(&self, n: usize) -> Result<Self, TraceError> {
        if n >= self.txns.len() {
            return Ok(self.clone());
        }
        let txns = self.txns[..n].to_vec();
        let end_content = match self.kind {
            Kind::Sequential => {
                let mut doc = NaiveText::default();
                for (i, txn) in txns.iter().enumerate() {
                    doc.apply_txn(&txn.patches)
                        .map_err(|what| TraceError::new(&self.name, format!("txn {i}: {what}")))?;
                }
                Some(doc.to_string())
            }
            Kind::Concurrent => None,
        };
        Ok(Self {
            name: format!("{} (first {n} txns)", self.name),
            kind: self.kind,
            agents: self.agents,
            txns,
            end_content,
        })
    }

    /// Patches over all txns.
    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }

    /// Whether any inserted character is above U+FFFF, so that a UTF-16 position is not a code
    /// point position.
    pub fn has_astral(&self) -> bool {
        self.txns
            .iter()
            .flat_map(|t| &t.patches)
            .any(|p| p.ins.chars().any(|c| u32::from(c) > 0xFFFF))
    }
}

/// The document length after `patch`, or `None` if it reaches outside the document of `len`.
fn sequential_len(len: usize, patch: &Patch) -> Option<usize> {
    let end = patch.pos.checked_add(patch.del)?;
    if end > len {
        return None;
    }
    Some(len - patch.del + patch.ins.chars().count())
}

/// Where the shared traces live: `$WEFT_TRACES`, else `../shared/traces` beside the repository.
pub fn traces_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_TRACES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces")
}

/// Every `.json` and `.json.gz` file under `dir` and its subfolders, sorted by path.
pub fn trace_files(dir: &Path) -> Result<Vec<PathBuf>, TraceError> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let shown = folder.display().to_string();
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| TraceError::new(&shown, format!("cannot list: {e}")))?;
        for entry in entries {
            let path = entry
                .map_err(|e| TraceError::new(&shown, format!("cannot list: {e}")))?
                .path();
            if path.is_dir() {
                folders.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") || n.ends_with(".json.gz"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const SEQ: &str = r#"{"startContent":"","endContent":"hi!","txns":[
        {"time":"x","patches":[[0,0,"hey"]]},
        {"time":"x","patches":[[1,2,"i"],[2,0,"!"]]}]}"#;

    const CONC: &str = r#"{"kind":"concurrent","numAgents":2,"endContent":"ab","txns":[
        {"parents":[],"agent":0,"numChildren":2,"patches":[[0,0,"a"]]},
        {"parents":[0],"agent":1,"numChildren":1,"patches":[[1,0,"b"]]}]}"#;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn parses_sequential_plain_and_gzipped() {
        let plain = Trace::parse("s.json", SEQ.as_bytes()).unwrap();
        let zipped = Trace::parse("s.json", &gzip(SEQ.as_bytes())).unwrap();
        assert_eq!(plain, zipped);
        assert_eq!(plain.kind, Kind::Sequential);
        assert_eq!(plain.agents, 1);
        assert_eq!(plain.txns[1].parents, vec![0]);
        assert_eq!(plain.patch_count(), 3);
        assert_eq!(plain.end_content.as_deref(), Some("hi!"));
        let prefix = plain.prefix(1).unwrap();
        assert_eq!(prefix.end_content.as_deref(), Some("hey"));
    }

    #[test]
    fn parses_concurrent() {
        let t = Trace::parse("c.json.gz", CONC.as_bytes()).unwrap();
        assert_eq!(t.kind, Kind::Concurrent);
        assert_eq!(t.agents, 2);
        assert_eq!(t.txns[1].agent, 1);
        assert_eq!(t.prefix(1).unwrap().end_content, None);
    }

    #[test]
    fn start_content_becomes_a_first_txn() {
        let t = Trace::parse(
            "s",
            br#"{"startContent":"ab","endContent":"abc","txns":[{"patches":[[2,0,"c"]]}]}"#,
        )
        .unwrap();
        assert_eq!(t.txns.len(), 2);
        assert_eq!(t.txns[0].patches[0].ins, "ab");
    }

    fn error(bytes: &[u8]) -> String {
        Trace::parse("bad.json", bytes).unwrap_err().to_string()
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        assert!(error(b"").contains("bad.json: not a trace"));
        assert!(error(&[0x1f, 0x8b, 1, 2, 3]).contains("bad gzip data"));
        assert!(
            error(br#"{"endContent":"","txns":[{"patches":[[0,"x",""]]}]}"#)
                .contains("not a trace")
        );
        assert!(
            error(br#"{"endContent":"","txns":[{"patches":[[1,0,"x"]]}]}"#)
                .contains("txn 0, patch 0")
        );
        assert!(
            error(br#"{"endContent":"yy","txns":[{"patches":[[0,0,"x"]]}]}"#)
                .contains("endContent has 2")
        );
        assert!(error(br#"{"kind":"concurrent","endContent":"","txns":[]}"#).contains("numAgents"));
        assert!(
            error(br#"{"kind":"concurrent","numAgents":1,"endContent":"","txns":[{"parents":[0],"agent":0,"patches":[]}]}"#)
                .contains("parent 0, which is not an earlier txn")
        );
        assert!(
            error(br#"{"kind":"concurrent","numAgents":1,"endContent":"","txns":[{"parents":[],"agent":1,"patches":[]}]}"#)
                .contains("numAgents is 1")
        );
        assert!(error(br#"{"kind":"weird","endContent":"","txns":[]}"#).contains("unknown kind"));
    }

    #[test]
    fn load_names_the_file() {
        let e = Trace::load(Path::new("/nonexistent/trace.json.gz")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/trace.json.gz: cannot read")
        );
    }
}
