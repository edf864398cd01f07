//! The data directory: one daemon at a time, and never a silent new store in place of a lost
//! one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Exclusive locks held for the daemon's lifetime (released by the kernel when it exits,
/// however it exits).
#[derive(Debug)]
pub struct Locks {
    files: Vec<File>,
}

impl Locks {
    /// Also locks `path` itself (`flock`, which SQLite's own `fcntl` locks do not touch):
    /// every name of the file, hard links included, then meets the same lock. The file is
    /// kept open until the daemon exits.
    pub fn hold_file(&mut self, path: &Path, what: &str) -> Result<(), String> {
        let f = File::open(path).map_err(|e| format!("cannot open {what}: {e}"))?;
        match f.try_lock() {
            Ok(()) => {
                self.files.push(f);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(format!("{what} is in use by another process")),
            Err(TryLockError::Error(e)) => Err(format!("cannot lock {what}: {e}")),
        }
    }
}

/// A path with its symbolic links resolved (a file that does not exist yet: its directory's).
pub fn real_path(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// What a start created, removed again if the start is refused: a refused start leaves
/// nothing behind (a half-made data directory would be taken for a used one next time).
#[derive(Debug, Default)]
pub struct Created {
    pub dir: Option<PathBuf>,
    pub files: Vec<PathBuf>,
}

impl Created {
    pub fn remove(&mut self) {
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// The start went through: everything stays.
    pub fn forget(&mut self) {
        self.dir = None;
        self.files.clear();
    }
}

/// The data directory's entries that kup writes must be what kup writes: checked before any
/// state is read, so that no start fails after recovering the engine. A stale
/// `listen-address` (from the last run) is removed: it is written again once kup listens.
pub fn check_layout(dir: &Path) -> Result<(), String> {
    for (name, want_dir) in [
        ("patches", true),
        ("cluster-state.json", false),
        ("admin-token.tmp", false),
    ] {
        let p = dir.join(name);
        if let Ok(m) = std::fs::symlink_metadata(&p)
            && m.is_dir() != want_dir
        {
            return Err(format!(
                "{} is in the way: kup keeps a {} there; move it away",
                p.display(),
                if want_dir { "directory" } else { "file" }
            ));
        }
    }
    let addr = dir.join("listen-address");
    match std::fs::remove_file(&addr) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot replace {} (kup writes its address there): {e}",
            addr.display()
        )),
    }
}

/// Takes an exclusive lock on each `(lock file, what it guards)`; the first one held by
/// another process is refused with that process's id.
pub fn lock(targets: &[(PathBuf, String)]) -> Result<Locks, String> {
    let mut files = Vec::new();
    for (path, what) in targets {
        files.push(lock_one(path, what)?);
    }
    Ok(Locks { files })
}

fn lock_one(path: &Path, what: &str) -> Result<File, String> {
    let cannot = |e: std::io::Error| format!("cannot lock {what} ({}): {e}", path.display());
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(cannot)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(match pid.trim() {
                "" => format!("{what} is in use by another process"),
                pid => format!("{what} is in use by process {pid}"),
            });
        }
        Err(TryLockError::Error(e)) => return Err(cannot(e)),
    }
    // Who holds it, for the message of the next one who tries.
    f.set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| writeln!(f, "{}", std::process::id()))
        .and_then(|()| f.sync_all())
        .map_err(cannot)?;
    Ok(f)
}

/// What a daemon that ran leaves in its data directory besides the database: any of them
/// means the directory was used. (Not the admin token: an operator may provision it.)
const TRACES: [&str; 3] = [
    "cluster-state.json",
    "cluster-state.json.journal",
    "patches",
];

/// What to do about the store at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOpen {
    /// Open the existing database.
    Existing,
    /// Create a new, empty one.
    Create,
}

/// Decides whether the database is opened or created. A missing or empty database in a data
/// directory that was in use is refused (its upgrade, patches and history would be lost)
/// unless `init` says a fresh start is meant; `init` never discards a database that exists.
pub fn store_open(dir: &Path, db: &Path, init: bool) -> Result<StoreOpen, String> {
    let state = match std::fs::metadata(db) {
        Ok(m) if !m.is_file() => {
            return Err(format!("database {} is not a regular file", db.display()));
        }
        Ok(m) if m.len() == 0 => "empty",
        Ok(_) if init => {
            return Err(format!(
                "--init starts a new, empty store, but {} already holds one; move it away first if you mean to discard it",
                db.display()
            ));
        }
        Ok(_) => return Ok(StoreOpen::Existing),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
        Err(e) => return Err(format!("cannot read database {}: {e}", db.display())),
    };
    let traces: Vec<&str> = TRACES
        .iter()
        .copied()
        .filter(|t| dir.join(t).exists())
        .collect();
    if traces.is_empty() || init {
        remove_sidecars(db)?;
        return Ok(StoreOpen::Create);
    }
    Err(format!(
        "database {} is {state}, but data directory {} was in use (it holds {}): the upgrade's state, patches and history would be lost; restore the database from a backup, or start with --init to begin again with an empty store",
        db.display(),
        dir.display(),
        traces.join(", ")
    ))
}

/// SQLite's files beside a database that is gone: a new database must not replay the old
/// one's write-ahead log.
fn remove_sidecars(db: &Path) -> Result<(), String> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {
                tracing::warn!(file = %Path::new(&name).display(), "removed a lost database's file")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove {} (left by a lost database): {e}",
                    Path::new(&name).display()
                ));
            }
        }
    }
    Ok(())
}
