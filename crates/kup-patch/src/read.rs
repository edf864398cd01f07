//! Reading a bundle: every check, entirely in memory.
//!
//! Order matters. The archive is walked first, refusing anything that is not a plain member
//! with a safe name, while counting members and decompressed bytes so that a bomb stops at the
//! limit. Then the signature over the raw `manifest.json` bytes is checked against the trusted
//! keys *before* the manifest is even parsed, so untrusted JSON never reaches the parser. Only
//! then are the payload files compared with what the signed manifest declares.
//!
//! Nothing here writes to disk (the `tar` crate's unpack API is never used) and nothing may
//! panic, whatever the input: the fuzz target in `fuzz/` holds us to that.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use ed25519_dalek::{Signature, VerifyingKey};
use flate2::bufread::GzDecoder;

use crate::keys::key_id;
use crate::manifest::{Manifest, ManifestError, sha256_hex};
use crate::path::{MemberName, PathProblem, classify_member};

/// How much a bundle may hold. Both numbers bound memory use while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bundle, both as given (compressed) and once decompressed.
    pub max_bundle_bytes: u64,
    /// Most tar members (files and directories, manifest and signature included).
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bundle_bytes: 256 * 1024 * 1024,
            max_files: 1000,
        }
    }
}

/// A bundle that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub manifest: Manifest,
    /// Payload, keyed by manifest path (without the `files/` prefix).
    pub files: BTreeMap<String, Vec<u8>>,
    /// [`crate::key_id`] of the trusted key whose signature verified.
    pub key_id: String,
}

/// Why a bundle was refused. The Display text is the one-line reason shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle rejected: it is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("bundle rejected: its contents expand past the limit of {limit} bytes")]
    ExpandsTooLarge { limit: u64 },
    #[error("bundle rejected: it has more than {limit} members")]
    TooManyMembers { limit: usize },
    #[error("bundle rejected: not a tar or gzip archive ({reason})")]
    NotAnArchive { reason: String },
    #[error("bundle rejected: truncated ({reason})")]
    Truncated { reason: String },
    #[error("bundle rejected: damaged archive ({reason})")]
    Damaged { reason: String },
    #[error("bundle rejected: member {member:?} {problem}")]
    UnsafePath {
        member: String,
        problem: PathProblem,
    },
    #[error(
        "bundle rejected: member {member:?} is a {kind}; only regular files and directories are allowed"
    )]
    NotRegular { member: String, kind: String },
    #[error("bundle rejected: member {member:?} appears more than once")]
    DuplicateMember { member: String },
    #[error("bundle rejected: {member} is not declared in the manifest")]
    Undeclared { member: String },
    #[error("bundle rejected: files/{path} is declared in the manifest but missing")]
    MissingFile { path: String },
    #[error("bundle rejected: files/{path} is {actual} bytes but the manifest declares {declared}")]
    SizeMismatch {
        path: String,
        declared: u64,
        actual: u64,
    },
    #[error("bundle rejected: files/{path} does not match its sha256 (tampered)")]
    HashMismatch { path: String },
    #[error("bundle rejected: manifest.json is missing")]
    MissingManifest,
    #[error("bundle rejected: manifest.sig is missing (the bundle is unsigned)")]
    Unsigned,
    #[error("bundle rejected: manifest.sig is malformed ({reason})")]
    MalformedSignature { reason: &'static str },
    #[error("bundle rejected: not signed by a trusted key")]
    Untrusted,
    #[error("bundle rejected: manifest names key {declared} but was signed by key {actual}")]
    KeyIdMismatch { declared: String, actual: String },
    #[error("bundle rejected: manifest.json is not a valid manifest ({reason})")]
    ManifestJson { reason: String },
    #[error("bundle rejected: manifest.json is invalid: {0}")]
    InvalidManifest(ManifestError),
}

/// Checks `bytes` completely and returns its contents if, and only if, it is a well-formed
/// bundle signed by one of `trusted` whose payload matches the manifest exactly.
pub fn read(
    bytes: &[u8],
    trusted: &[VerifyingKey],
    limits: &Limits,
) -> Result<Bundle, BundleError> {
    let size = bytes.len() as u64;
    if size > limits.max_bundle_bytes {
        return Err(BundleError::TooLarge {
            size,
            limit: limits.max_bundle_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(BundleError::NotAnArchive {
            reason: "the file is empty".into(),
        });
    }
    let members = unpack(bytes, limits)?;

    let manifest_json = members.manifest.ok_or(BundleError::MissingManifest)?;
    let signature = parse_signature(&members.signature.ok_or(BundleError::Unsigned)?)?;
    // verify_strict also refuses malleable signatures and small-order keys.
    let signer = trusted
        .iter()
        .find(|k| k.verify_strict(&manifest_json, &signature).is_ok())
        .ok_or(BundleError::Untrusted)?;

    let manifest: Manifest =
        serde_json::from_slice(&manifest_json).map_err(|e| BundleError::ManifestJson {
            reason: one_line(&e.to_string()),
        })?;
    manifest.validate().map_err(BundleError::InvalidManifest)?;
    let actual = key_id(signer);
    if manifest.key_id != actual {
        return Err(BundleError::KeyIdMismatch {
            declared: manifest.key_id,
            actual,
        });
    }

    let files = members.files;
    for entry in &manifest.files {
        let data = files
            .get(&entry.path)
            .ok_or_else(|| BundleError::MissingFile {
                path: entry.path.clone(),
            })?;
        let actual = data.len() as u64;
        if actual != entry.size {
            return Err(BundleError::SizeMismatch {
                path: entry.path.clone(),
                declared: entry.size,
                actual,
            });
        }
        if sha256_hex(data) != entry.sha256 {
            return Err(BundleError::HashMismatch {
                path: entry.path.clone(),
            });
        }
    }
    // Same count and every declared path present means no extra member; find it to name it.
    if files.len() != manifest.files.len() {
        let declared: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let extra = files
            .keys()
            .find(|p| !declared.contains(p.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(BundleError::Undeclared {
            member: format!("files/{extra}"),
        });
    }

    Ok(Bundle {
        manifest,
        files,
        key_id: actual,
    })
}

/// `manifest.sig`: 128 hex characters, optionally followed by one newline.
fn parse_signature(raw: &[u8]) -> Result<Signature, BundleError> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    if body.len() != 128 {
        return Err(BundleError::MalformedSignature {
            reason: "expected 128 hex characters and an optional newline",
        });
    }
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(body, &mut bytes).map_err(|_| BundleError::MalformedSignature {
        reason: "not hexadecimal",
    })?;
    Ok(Signature::from_bytes(&bytes))
}

/// The members of an archive that passed the structural checks.
#[derive(Default)]
struct Members {
    manifest: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
}

/// Shared by the metered reader and the error classification.
struct Meter {
    limit: u64,
    read: Cell<u64>,
    exceeded: Cell<bool>,
    /// The decompressed stream ended (a read returned 0 bytes).
    eof: Cell<bool>,
    /// An error from below the tar layer (the gzip decoder), kept to explain the failure.
    source_error: RefCell<Option<(io::ErrorKind, String)>>,
}

/// Counts every decompressed byte handed to the tar parser and fails past the limit, so a
/// small gzip stream cannot make us hold gigabytes.
struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.exceeded.get() {
            return Err(io::Error::other("size limit exceeded"));
        }
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.meter.eof.set(true);
                Ok(0)
            }
            Ok(n) => {
                let total = self.meter.read.get().saturating_add(n as u64);
                if total > self.meter.limit {
                    self.meter.exceeded.set(true);
                    return Err(io::Error::other("size limit exceeded"));
                }
                self.meter.read.set(total);
                Ok(n)
            }
            Err(e) => {
                *self.meter.source_error.borrow_mut() = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

/// Plain tar or gzip-compressed tar, chosen by the gzip magic bytes.
enum Source<'a> {
    Plain(&'a [u8]),
    Gzip(Box<GzDecoder<&'a [u8]>>),
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Gzip(r) => r.read(buf),
        }
    }
}

impl Meter {
    /// Turns an I/O error met while walking the archive into the reason the operator sees.
    fn classify(&self, e: &io::Error, members_seen: usize) -> BundleError {
        if self.exceeded.get() {
            return BundleError::ExpandsTooLarge { limit: self.limit };
        }
        if let Some((kind, msg)) = self.source_error.borrow().as_ref() {
            return if *kind == io::ErrorKind::UnexpectedEof {
                BundleError::Truncated {
                    reason: "the gzip stream ends early".into(),
                }
            } else if self.read.get() == 0 {
                BundleError::NotAnArchive {
                    reason: format!("not a valid gzip stream: {}", one_line(msg)),
                }
            } else {
                BundleError::Damaged {
                    reason: format!("corrupt gzip stream: {}", one_line(msg)),
                }
            };
        }
        if members_seen == 0 {
            return BundleError::NotAnArchive {
                reason: format!("no valid tar header: {}", one_line(&e.to_string())),
            };
        }
        if self.eof.get() {
            return BundleError::Truncated {
                reason: "the archive ends in the middle of a member".into(),
            };
        }
        BundleError::Damaged {
            reason: one_line(&e.to_string()),
        }
    }
}

/// Makes text from a parser (which may quote attacker-chosen bytes) safe for a one-line
/// reason: control characters escaped, length bounded.
fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Shortens and escapes a raw member name for an error message.
fn shown(raw: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() > MAX {
        let mut cut: String = text.chars().take(MAX).collect();
        cut.push('…');
        cut
    } else {
        text.into_owned()
    }
}

fn kind_name(kind: tar::EntryType) -> String {
    use tar::EntryType::*;
    match kind {
        Symlink => "symbolic link".into(),
        Link => "hard link".into(),
        Char => "character device".into(),
        Block => "block device".into(),
        Fifo => "FIFO".into(),
        Continuous => "contiguous file".into(),
        GNUSparse => "sparse file".into(),
        XGlobalHeader => "PAX global header".into(),
        other => format!(
            "non-regular entry of type {:?}",
            char::from(other.as_byte())
        ),
    }
}

/// Walks the archive, applying every check that needs no manifest.
fn unpack(bytes: &[u8], limits: &Limits) -> Result<Members, BundleError> {
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    let source = if gzip {
        Source::Gzip(Box::new(GzDecoder::new(bytes)))
    } else {
        Source::Plain(bytes)
    };
    let meter = Meter {
        limit: limits.max_bundle_bytes,
        read: Cell::new(0),
        exceeded: Cell::new(false),
        eof: Cell::new(false),
        source_error: RefCell::new(None),
    };
    let mut archive = tar::Archive::new(Metered {
        inner: source,
        meter: &meter,
    });

    let mut out = Members::default();
    let mut seen = BTreeSet::new();
    let mut count = 0usize;
    let entries = archive.entries().map_err(|e| meter.classify(&e, count))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| meter.classify(&e, count))?;
        count += 1;
        if count > limits.max_files {
            return Err(BundleError::TooManyMembers {
                limit: limits.max_files,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if !kind.is_file() && !kind.is_dir() {
            return Err(BundleError::NotRegular {
                member: shown(&raw),
                kind: kind_name(kind),
            });
        }
        let name =
            classify_member(&raw, kind.is_dir()).map_err(|problem| BundleError::UnsafePath {
                member: shown(&raw),
                problem,
            })?;
        // classify_member accepted it, so it is UTF-8 with at most a directory's trailing '/'.
        let key = shown(&raw).trim_end_matches('/').to_string();
        if !seen.insert(key.clone()) {
            return Err(BundleError::DuplicateMember { member: key });
        }

        let size = entry.size();
        // Never trust the header's size for an allocation: grow as real bytes arrive.
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| meter.classify(&e, count))?;
        if data.len() as u64 != size {
            return Err(BundleError::Truncated {
                reason: format!("member {key:?} ends early"),
            });
        }
        match name {
            MemberName::Manifest => out.manifest = Some(data),
            MemberName::Signature => out.signature = Some(data),
            MemberName::File(rel) => {
                out.files.insert(rel, data);
            }
            MemberName::Dir if !data.is_empty() => {
                return Err(BundleError::Damaged {
                    reason: format!("directory member {key:?} has contents"),
                });
            }
            MemberName::Dir => {}
        }
    }

    // A clean end is a zero block the parser has read without meeting end of input; running
    // out of input exactly between members means the tail was cut off.
    if meter.eof.get() {
        return Err(BundleError::Truncated {
            reason: "the archive has no end-of-archive marker".into(),
        });
    }
    // Read what follows the marker: it must be zero padding, and reading it to the end makes
    // the gzip decoder check its length and CRC trailer.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
            Ok(_) => {
                return Err(BundleError::Damaged {
                    reason: "data after the end-of-archive marker".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(meter.classify(&e, count)),
        }
    }
    if let Source::Gzip(decoder) = rest.inner
        && !decoder.into_inner().is_empty()
    {
        return Err(BundleError::Damaged {
            reason: "data after the end of the gzip stream".into(),
        });
    }
    Ok(out)
}
