//! The simulated cluster on disk, so it outlives the process that simulates it: a snapshot of
//! the whole model (`PATH`) and a journal of the changes since (`PATH.journal`), so a change
//! costs what it touched, not a rewrite of every pod. The journal is folded into a new
//! snapshot when it grows large, and at every start.
//!
//! The snapshot is `{"format":2,"generation":G,"model":{...}}`; a snapshot without `format`
//! is one written before the journal was framed (format 1: the bare model) and is read as
//! before, its journal of plain JSON lines with it. Each snapshot has the next generation.
//!
//! The journal of generation G (format 2):
//! - two header slots of [`SLOT`] bytes, `GGGGGGGGGGGGGGGG SSSSSSSSSSSSSSSS CCCCCCCC`, padded,
//!   each ending with a newline: the generation, the number of the last acknowledged record
//!   and a CRC-32 of the two (hex). Record `n` updates slot `n % 2`, so a slot cut while
//!   being written leaves the other one, one record behind;
//! - one record per append, a line `SEQ CRC JSON`: the sequence number (1, 2, ...), a CRC-32
//!   (hex) of the generation, the number and the JSON, and the changes of that append as a
//!   JSON array.
//!
//! An append writes its record, syncs the file (`fdatasync`), then writes its number into a
//! header slot and syncs again: only then is the change acknowledged (the operation reported
//! done). So the slots never count a record that is not on disk, and replay knows how many
//! were acknowledged: a damaged, missing or out-of-order record up to that number is a
//! refusal; only what follows it — one append cut by a crash, never acknowledged — is dropped.
//!
//! A new snapshot writes its journal first (`PATH.journal.tmp`, empty), then the snapshot
//! (`PATH.tmp`, renamed over `PATH`), then renames the journal: a crash in between leaves the
//! new snapshot beside the old journal, which is of an older generation and already folded
//! in, so it is skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{Change, SimModel};

/// A journal longer than this is folded into a new snapshot.
const JOURNAL_LIMIT: u64 = 64 << 20;
/// The format this code writes; it reads this one and format 1 (no `format` field).
const FORMAT: u32 = 2;
/// The size of one header slot of the journal.
const SLOT: usize = 48;
/// Where the journal's records begin: after its two header slots.
const HEADER: u64 = 2 * SLOT as u64;

/// The simulated cluster's state cannot be read or written. Each message is one line: what is
/// wrong, and what deleting the files instead of restoring them would lose.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error(
        "simulation state {path} is unreadable: {why}. It holds the simulated cluster's progress \
         (the hosts' versions, locks and pods); restore it and its journal from a backup. \
         Deleting them would start a fresh cluster at the cluster file's versions, behind every \
         step kup's database records as done"
    )]
    Snapshot { path: String, why: String },
    #[error(
        "the journal {path} of the simulated cluster's state is damaged: {why}. It holds the \
         changes acknowledged since the state was last written whole; restore the state and its \
         journal from a backup. Deleting the journal would lose those changes, and deleting both \
         would start a fresh cluster at the cluster file's versions, behind every step kup's \
         database records as done"
    )]
    Journal { path: String, why: String },
    #[error(
        "simulation state {path} is of format {found}, written by a newer kup (this one reads \
         formats 1 to {FORMAT}); run that version, or restore a state written by this one"
    )]
    NewerFormat { path: String, found: u64 },
    #[error("cannot save the simulated cluster to {path}: {why}")]
    CannotSave { path: String, why: String },
}

/// The snapshot as written (format 2; its `format` is read before the rest).
#[derive(Deserialize)]
struct Stored {
    generation: u64,
    model: SimModel,
}

pub struct StateFile {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Option<File>,
    /// The generation of the snapshot on disk, and of its journal.
    generation: u64,
    /// The number of the journal's last record.
    seq: u64,
    /// Where the next record goes.
    end: u64,
    /// Why the last change could not be saved, until a save succeeds again.
    failed: Option<String>,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

/// The CRC-32 of a record: its generation and number with its bytes, so a record copied from
/// another place or another journal does not pass.
fn record_crc(generation: u64, seq: u64, json: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&generation.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(json);
    h.finalize()
}

/// A header slot: the generation and the last acknowledged record, with their CRC-32.
fn slot(generation: u64, seq: u64) -> [u8; SLOT] {
    let text = format!("{generation:016x} {seq:016x}");
    let crc = crc32fast::hash(text.as_bytes());
    let mut out = [b' '; SLOT];
    let line = format!("{text} {crc:08x}");
    out[..line.len()].copy_from_slice(line.as_bytes());
    out[SLOT - 1] = b'\n';
    out
}

/// A header slot read back: `(generation, seq)`, or `None` if damaged.
fn read_slot(b: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(b.get(..SLOT)?).ok()?;
    let mut parts = text.trim_end().split(' ');
    let (g, s, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || g.len() != 16 || s.len() != 16 || c.len() != 8 {
        return None;
    }
    let crc = u32::from_str_radix(c, 16).ok()?;
    (crc32fast::hash(&text.as_bytes()[..33]) == crc).then_some(())?;
    Some((
        u64::from_str_radix(g, 16).ok()?,
        u64::from_str_radix(s, 16).ok()?,
    ))
}

/// A record line (without its newline) read back: its number and changes, or what is wrong.
fn read_record(generation: u64, line: &[u8]) -> Result<(u64, Vec<Change>), String> {
    let mut parts = line.splitn(3, |b| *b == b' ');
    let (Some(seq), Some(crc), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a record".into());
    };
    let seq: u64 = std::str::from_utf8(seq)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("not a record")?;
    let crc = std::str::from_utf8(crc)
        .ok()
        .filter(|c| c.len() == 8)
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or("not a record")?;
    if record_crc(generation, seq, json) != crc {
        return Err("its checksum does not match".into());
    }
    let changes = serde_json::from_slice(json).map_err(|e| format!("unreadable: {e}"))?;
    Ok((seq, changes))
}

/// Syncs the directory holding `path`, so a rename in it is on disk.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl StateFile {
    /// Loads the model from `path` and its journal, or makes it with `fresh` when there is no
    /// state yet; either way writes it back as one snapshot.
    pub fn open(
        path: PathBuf,
        fresh: impl FnOnce() -> SimModel,
    ) -> Result<(SimModel, StateFile), StateError> {
        let mut file = StateFile {
            journal_path: with_suffix(&path, ".journal"),
            path,
            journal: None,
            generation: 0,
            seq: 0,
            end: HEADER,
            failed: None,
        };
        let mut model = match file.read_snapshot()? {
            Some((mut m, generation)) => {
                file.generation = generation.unwrap_or(0);
                match generation {
                    Some(g) => file.replay(&mut m, g)?,
                    None => file.replay_format_1(&mut m)?,
                }
                m.settle_after_restart();
                m.rebuild();
                m
            }
            None => fresh(),
        };
        file.snapshot(&mut model);
        // A cluster whose state cannot be kept would forget, at the next start, steps kup
        // recorded as done: refused now rather than found out then.
        if let Some(why) = file.failed.take() {
            return Err(StateError::CannotSave {
                path: file.path.display().to_string(),
                why,
            });
        }
        Ok((model, file))
    }

    fn snapshot_error(&self, why: impl std::fmt::Display) -> StateError {
        StateError::Snapshot {
            path: self.path.display().to_string(),
            why: why.to_string(),
        }
    }

    fn journal_error(&self, why: impl std::fmt::Display) -> StateError {
        StateError::Journal {
            path: self.journal_path.display().to_string(),
            why: why.to_string(),
        }
    }

    /// The snapshot and its generation (`None`: format 1), or `None` when there is none.
    fn read_snapshot(&self) -> Result<Option<(SimModel, Option<u64>)>, StateError> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.snapshot_error(e)),
        };
        let mut r = BufReader::with_capacity(1 << 16, f);
        const PREFIX: &[u8] = b"{\"format\":";
        let head = r.fill_buf().map_err(|e| self.snapshot_error(e))?;
        if !head.starts_with(PREFIX) {
            let m = serde_json::from_reader(r).map_err(|e| self.snapshot_error(e))?;
            return Ok(Some((m, None)));
        }
        let digits: String = head[PREFIX.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| char::from(b))
            .collect();
        let format: u64 = digits
            .parse()
            .map_err(|_| self.snapshot_error("its format is not a number"))?;
        if format > u64::from(FORMAT) {
            return Err(StateError::NewerFormat {
                path: self.path.display().to_string(),
                found: format,
            });
        }
        let s: Stored = serde_json::from_reader(r).map_err(|e| self.snapshot_error(e))?;
        Ok(Some((s.model, Some(s.generation))))
    }

    /// Replays a format-1 journal (plain JSON lines) onto a format-1 snapshot. A cut-off last
    /// line was an append a crash interrupted; anything else damaged is refused.
    fn replay_format_1(&self, m: &mut SimModel) -> Result<(), StateError> {
        let f = match File::open(&self.journal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.journal_error(e)),
        };
        let mut r = BufReader::new(f);
        if read_slot(r.fill_buf().map_err(|e| self.journal_error(e))?).is_some() {
            return Err(self.journal_error(
                "it is of format 2, newer than its state (format 1): they do not belong together",
            ));
        }
        let mut lines = r.lines().peekable();
        while let Some(line) = lines.next() {
            let line = line.map_err(|e| self.journal_error(e))?;
            match serde_json::from_str::<Change>(&line) {
                Ok(c) => m.apply_change(c),
                Err(_) if lines.peek().is_none() => break,
                Err(e) => return Err(self.journal_error(e)),
            }
        }
        Ok(())
    }

    /// Replays the journal of generation `generation` (see the module's description).
    fn replay(&self, m: &mut SimModel, generation: u64) -> Result<(), StateError> {
        let read = |path: &Path| {
            let mut bytes = Vec::new();
            File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| bytes))
        };
        let bytes = match read(&self.journal_path) {
            Ok(bytes) => bytes,
            // The journal of a new snapshot is renamed in after it: on the first start, a
            // crash in between leaves it under its temporary name only (nothing appended).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match read(&with_suffix(&self.journal_path, ".tmp")) {
                    Ok(bytes) => bytes,
                    Err(_) => return Err(self.journal_error("it is missing")),
                }
            }
            Err(e) => return Err(self.journal_error(e)),
        };
        let slots: Vec<(u64, u64)> = [&bytes[..], bytes.get(SLOT..).unwrap_or_default()]
            .into_iter()
            .filter_map(read_slot)
            .collect();
        let Some(&(found, _)) = slots.iter().max() else {
            return Err(self.journal_error(if bytes.first() == Some(&b'{') {
                "it is of format 1, older than its state (format 2): they do not belong together"
                    .to_string()
            } else {
                "its header is damaged".to_string()
            }));
        };
        if found < generation {
            // Written before the snapshot, which holds all of it: a crash came between the
            // snapshot and its new journal.
            return Ok(());
        }
        if found > generation {
            return Err(self.journal_error(format!(
                "it follows state {found}, but the state is {generation}: the state is older \
                 than its journal"
            )));
        }
        let acked = slots
            .iter()
            .filter(|(g, _)| *g == generation)
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0);
        let mut at = HEADER as usize;
        let mut last = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let (line, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(n) => (&rest[..n], at + n + 1),
                None => (rest, bytes.len()),
            };
            let want = last + 1;
            let problem = match read_record(generation, line) {
                Ok(_) if next == bytes.len() && bytes.last() != Some(&b'\n') => {
                    Some("it is cut off".to_string())
                }
                Ok((seq, _)) if seq != want => Some(format!("record {seq} is in its place")),
                Ok((_, changes)) => {
                    for c in changes {
                        m.apply_change(c);
                    }
                    None
                }
                Err(why) if next == bytes.len() && bytes.last() != Some(&b'\n') => {
                    Some(format!("it is cut off ({why})"))
                }
                Err(why) => Some(why),
            };
            if let Some(why) = problem {
                // What follows the acknowledged records is an append a crash cut off: it was
                // never reported done.
                if want > acked {
                    break;
                }
                return Err(
                    self.journal_error(format!("record {want} of {acked} acknowledged: {why}"))
                );
            }
            last = want;
            at = next;
        }
        if last < acked {
            return Err(self.journal_error(format!(
                "it ends after record {last}, but {acked} were acknowledged: the last {} lost",
                acked - last
            )));
        }
        if last > acked + 1 {
            return Err(self.journal_error(format!(
                "it holds {last} records, but its header counts {acked}"
            )));
        }
        Ok(())
    }

    /// Why the last change could not be saved, if it could not (a full disk, say). Saving is
    /// tried again first, the whole model at once.
    pub fn check(&mut self, model: &mut SimModel) -> Result<(), String> {
        if self.failed.is_some() {
            self.snapshot(model);
        }
        match &self.failed {
            Some(why) => Err(format!(
                "the simulated cluster cannot save its state to {}: {why}",
                self.path.display()
            )),
            None => Ok(()),
        }
    }

    /// Writes the whole model as the next generation, with an empty journal (see the module's
    /// description for the order).
    pub fn snapshot(&mut self, model: &mut SimModel) {
        // The snapshot holds every change: none is journaled (nor copied to be dropped).
        model.forget_changes();
        let generation = self.generation + 1;
        let journal_tmp = with_suffix(&self.journal_path, ".tmp");
        let tmp = self.path.with_extension("tmp");
        let written = (|| {
            let journal = File::create(&journal_tmp)?;
            journal.write_all_at(&slot(generation, 0), 0)?;
            journal.write_all_at(&slot(generation, 0), SLOT as u64)?;
            journal.sync_data()?;
            let mut w = std::io::BufWriter::new(File::create(&tmp)?);
            write!(
                w,
                "{{\"format\":{FORMAT},\"generation\":{generation},\"model\":"
            )?;
            serde_json::to_writer(&mut w, model).map_err(std::io::Error::other)?;
            w.write_all(b"}")?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)?;
            std::fs::rename(&journal_tmp, &self.journal_path)?;
            sync_dir(&self.journal_path)?;
            Ok::<_, std::io::Error>(journal)
        })();
        match written {
            Ok(journal) => {
                self.journal = Some(journal);
                self.generation = generation;
                self.seq = 0;
                self.end = HEADER;
                self.failed = None;
            }
            // The simulation keeps running in memory, refusing new steps until it can save
            // again (see `check`); the next change writes a snapshot.
            Err(e) => {
                self.journal = None;
                tracing::warn!(error = %e, path = %self.path.display(), "cannot save the simulated cluster");
                self.failed = Some(e.to_string());
            }
        }
    }

    /// Appends what changed since the last call as one record, durably: it is on disk, and
    /// counted in the header, when this returns (unless saving failed: see `check`).
    pub fn record(&mut self, model: &mut SimModel) {
        if self.journal.is_none() || self.end > JOURNAL_LIMIT {
            return self.snapshot(model);
        }
        let changes = model.take_changes();
        if changes.is_empty() {
            return;
        }
        let seq = self.seq + 1;
        let appended = serde_json::to_vec(&changes)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                let crc = record_crc(self.generation, seq, &json);
                let mut line = format!("{seq} {crc:08x} ").into_bytes();
                line.extend_from_slice(&json);
                line.push(b'\n');
                let journal = self.journal.as_ref().expect("checked above");
                // The record on disk before the header counts it.
                journal.write_all_at(&line, self.end)?;
                journal.sync_data()?;
                journal.write_all_at(&slot(self.generation, seq), (seq % 2) * SLOT as u64)?;
                journal.sync_data()?;
                Ok(line.len() as u64)
            });
        match appended {
            Ok(len) => {
                self.seq = seq;
                self.end += len;
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.journal_path.display(), "cannot append to the simulated cluster's journal");
                self.journal = None;
                self.failed = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Inventory;
    use kup_types::Operation;

    fn lock(host: &str) -> Operation {
        Operation::Lock {
            host: host.into(),
            force: false,
        }
    }

    fn unlock(host: &str) -> Operation {
        Operation::Unlock { host: host.into() }
    }

    /// The model as a start after a crash would show it: what runs forgotten.
    fn as_restarted(m: &SimModel) -> String {
        let mut m = m.clone();
        m.settle_after_restart();
        m.rebuild();
        serde_json::to_string(&m).unwrap()
    }

    /// A state file whose journal holds 6 records (each the start or the end of a step), and
    /// the model after 0 to 6 of them, as a restart shows it.
    fn six_records(path: &Path) -> Vec<String> {
        let (mut m, mut file) = StateFile::open(path.to_path_buf(), || {
            SimModel::from_inventory(&Inventory::default_cluster(), jiff::Timestamp::UNIX_EPOCH)
        })
        .unwrap();
        let mut states = vec![as_restarted(&m)];
        let now = jiff::Timestamp::UNIX_EPOCH;
        for op in [lock("worker-0"), unlock("worker-0"), lock("worker-1")] {
            m.begin(&op);
            file.record(&mut m);
            states.push(as_restarted(&m));
            m.end(&op, true, now);
            file.record(&mut m);
            states.push(as_restarted(&m));
        }
        assert!(file.failed.is_none());
        assert_eq!(file.seq, 6);
        states
    }

    /// Where each record line of a journal begins, and where the last one ends.
    fn record_bounds(journal: &[u8]) -> Vec<usize> {
        let mut at = vec![HEADER as usize];
        for (i, b) in journal.iter().enumerate().skip(HEADER as usize) {
            if *b == b'\n' {
                at.push(i + 1);
            }
        }
        at
    }

    /// The journal's generation, read from its first slot.
    fn generation(journal: &[u8]) -> u64 {
        read_slot(journal).unwrap().0
    }

    fn cut(at: usize) -> impl Fn(&mut Vec<u8>) {
        move |j: &mut Vec<u8>| j.truncate(at)
    }

    /// Opens the files as they are; the model as a restart shows it, or the error.
    fn reopen(path: &Path) -> Result<String, StateError> {
        StateFile::open(path.to_path_buf(), || panic!("a state is there"))
            .map(|(m, _)| as_restarted(&m))
    }

    /// Every way a journal can be found after a crash or damage: read to the last
    /// acknowledged record (or the one after it, written whole but not yet counted), or
    /// refused with the reason; a refusal changes no file.
    #[test]
    fn a_damaged_journal_is_refused_and_a_cut_off_append_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        let states = six_records(&path);
        let journal_path = with_suffix(&path, ".journal");
        let good_state = std::fs::read(&path).unwrap();
        let good_journal = std::fs::read(&journal_path).unwrap();
        let bounds = record_bounds(&good_journal);
        let (good, at) = (&good_journal[..], &bounds[..]);
        assert_eq!(at.len(), 7, "6 records");
        let g = generation(good);
        assert_eq!(g, 1, "the first snapshot's journal");
        // Record n is in [at[n - 1], at[n]).
        let rec = move |n: usize| good[at[n - 1]..at[n]].to_vec();
        let mid = move |n: usize| (at[n - 1] + at[n]) / 2;
        // The header before record 6 counted it: slot 0 back to record 4.
        let uncounted = |j: &mut Vec<u8>| {
            let s = slot(generation(j), 4);
            j[..SLOT].copy_from_slice(&s);
        };
        type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
        let cases: Vec<(&str, Damage<'_>, Result<usize, &str>)> = vec![
            ("intact", Box::new(|_| {}), Ok(6)),
            (
                "record 6 written whole, the crash before its header slot",
                Box::new(uncounted),
                Ok(6),
            ),
            (
                "record 6 cut off by the crash, its header slot not written",
                Box::new(move |j| {
                    uncounted(j);
                    j.truncate(mid(6));
                }),
                Ok(5),
            ),
            (
                "record 6 not written at all, its header slot neither",
                Box::new(move |j| {
                    uncounted(j);
                    j.truncate(at[5]);
                }),
                Ok(5),
            ),
            (
                "the header slot of record 6 cut while written",
                Box::new(|j| j[10..20].fill(0)),
                Ok(6),
            ),
            (
                "garbage after the last record, never counted",
                Box::new(|j| j.extend_from_slice(b"\0\0\0garbage\n\0\0")),
                Ok(6),
            ),
            (
                "acknowledged record 6 cut in the middle",
                Box::new(cut(mid(6))),
                Err("record 6 of 6 acknowledged: it is cut off"),
            ),
            (
                "acknowledged record 6 without its newline",
                Box::new(cut(at[6] - 1)),
                Err("record 6 of 6 acknowledged: it is cut off"),
            ),
            (
                "cut at the record boundary before acknowledged record 6",
                Box::new(cut(at[5])),
                Err("it ends after record 5, but 6 were acknowledged: the last 1 lost"),
            ),
            (
                "cut at the record boundary before record 3",
                Box::new(cut(at[2])),
                Err("it ends after record 2, but 6 were acknowledged: the last 4 lost"),
            ),
            (
                "records cut off to the header",
                Box::new(cut(HEADER as usize)),
                Err("it ends after record 0, but 6 were acknowledged"),
            ),
            (
                "a flipped byte in record 3",
                Box::new(move |j| j[mid(3)] ^= 0x20),
                Err("record 3 of 6 acknowledged: its checksum does not match"),
            ),
            (
                "a flipped byte in the last record",
                Box::new(move |j| j[mid(6)] ^= 0x01),
                Err("record 6 of 6 acknowledged: its checksum does not match"),
            ),
            (
                "a flipped digit in the sequence number of record 2",
                Box::new(move |j| j[at[1]] = b'7'),
                Err("record 2 of 6 acknowledged: its checksum does not match"),
            ),
            (
                "records 3 and 4 swapped",
                Box::new(move |j| {
                    let mut swapped = good[..at[2]].to_vec();
                    swapped.extend(rec(4));
                    swapped.extend(rec(3));
                    swapped.extend_from_slice(&good[at[4]..]);
                    *j = swapped;
                }),
                Err("record 3 of 6 acknowledged: record 4 is in its place"),
            ),
            (
                "record 3 missing",
                Box::new(move |j| {
                    j.drain(at[2]..at[3]);
                }),
                Err("record 3 of 6 acknowledged: record 4 is in its place"),
            ),
            (
                "record 3 twice",
                Box::new(move |j| {
                    let r = j[at[2]..at[3]].to_vec();
                    j.splice(at[3]..at[3], r);
                }),
                Err("record 4 of 6 acknowledged: record 3 is in its place"),
            ),
            (
                "a record of another journal (another generation)",
                Box::new(move |j| {
                    let json = b"[]";
                    let line = format!("3 {:08x} []\n", record_crc(g + 7, 3, json));
                    j.splice(at[2]..at[3], line.into_bytes());
                }),
                Err("record 3 of 6 acknowledged: its checksum does not match"),
            ),
            (
                "both header slots damaged",
                Box::new(|j| j[..HEADER as usize].fill(b'x')),
                Err("its header is damaged"),
            ),
            (
                "the journal emptied",
                Box::new(|j| j.clear()),
                Err("its header is damaged"),
            ),
            (
                "the journal of the state before (a crash between the state and its journal)",
                Box::new(move |j| {
                    j.truncate(HEADER as usize);
                    j[..SLOT].copy_from_slice(&slot(g - 1, 3));
                    j[SLOT..].copy_from_slice(&slot(g - 1, 2));
                    j.extend_from_slice(b"1 00000000 [garbage of an older journal]\n");
                }),
                Ok(0),
            ),
            (
                "a journal newer than its state",
                Box::new(move |j| {
                    j[..SLOT].copy_from_slice(&slot(g + 1, 6));
                    j[SLOT..HEADER as usize].copy_from_slice(&slot(g + 1, 5));
                }),
                Err("it follows state 2, but the state is 1: the state is older than its journal"),
            ),
        ];
        for (case, damage, want) in cases {
            std::fs::write(&path, &good_state).unwrap();
            let mut j = good.to_vec();
            damage(&mut j);
            std::fs::write(&journal_path, &j).unwrap();
            match (reopen(&path), want) {
                (Ok(m), Ok(n)) => assert!(m == states[n], "{case}: not the model after {n}"),
                (Err(e), Err(why)) => {
                    let text = e.to_string();
                    assert!(
                        matches!(e, StateError::Journal { .. }) && text.contains(why),
                        "{case}: {text}"
                    );
                    assert_eq!(std::fs::read(&path).unwrap(), good_state, "{case}");
                    assert_eq!(std::fs::read(&journal_path).unwrap(), j, "{case}");
                }
                (got, want) => panic!("{case}: {:?}, expected {want:?}", got.map(|_| "a model")),
            }
        }
        // Lost, it is refused too: it held acknowledged changes.
        std::fs::write(&path, &good_state).unwrap();
        std::fs::remove_file(&journal_path).unwrap();
        let e = reopen(&path).unwrap_err();
        assert!(e.to_string().contains("is damaged: it is missing."), "{e}");
    }

    /// A crash between a new snapshot and the rename of its journal: on the first start the
    /// new journal is left under its temporary name (and read from there), later the journal
    /// of the snapshot before is left beside it (already in it: skipped).
    #[test]
    fn a_crash_while_writing_a_snapshot_leaves_a_readable_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        let journal = with_suffix(&path, ".journal");
        let fresh =
            || SimModel::from_inventory(&Inventory::default_cluster(), jiff::Timestamp::UNIX_EPOCH);
        let (first, _) = StateFile::open(path.clone(), fresh).unwrap();
        std::fs::rename(&journal, with_suffix(&journal, ".tmp")).unwrap();
        let (mut m, mut file) =
            StateFile::open(path.clone(), || panic!("a state is there")).unwrap();
        assert!(as_restarted(&m) == as_restarted(&first));
        assert_eq!(file.generation, 2);

        let now = jiff::Timestamp::UNIX_EPOCH;
        m.begin(&lock("worker-0"));
        m.end(&lock("worker-0"), true, now);
        file.record(&mut m);
        let old = std::fs::read(&journal).unwrap();
        file.snapshot(&mut m);
        std::fs::write(&journal, &old).unwrap();
        let (again, file) = StateFile::open(path, || panic!("a state is there")).unwrap();
        assert!(as_restarted(&again) == as_restarted(&m));
        assert_eq!(file.generation, 4);
    }

    /// A state written before the journal was framed (format 1: the bare model, and plain
    /// JSON lines) is read as before, and written back in format 2.
    #[test]
    fn a_format_1_state_is_read_and_written_again_in_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut m = SimModel::from_inventory(&Inventory::default_cluster(), now);
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        m.forget_changes();
        let mut lines = Vec::new();
        for op in [lock("worker-0"), unlock("worker-0")] {
            m.begin(&op);
            m.end(&op, true, now);
            for c in m.take_changes() {
                serde_json::to_writer(&mut lines, &c).unwrap();
                lines.push(b'\n');
            }
        }
        // A crash cut the last append of format 1 too.
        lines.extend_from_slice(b"{\"change\":\"ho");
        std::fs::write(with_suffix(&path, ".journal"), &lines).unwrap();
        let (read, file) = StateFile::open(path.clone(), || panic!("a state is there")).unwrap();
        assert!(as_restarted(&read) == as_restarted(&m));
        assert_eq!(file.generation, 1);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("{\"format\":2,\"generation\":1,\"model\":{")
        );
        let (again, _) = StateFile::open(path, || panic!("a state is there")).unwrap();
        assert!(as_restarted(&again) == as_restarted(&m));
    }

    /// A state or journal of another format than its partner, or a newer one, is refused
    /// with what to do.
    #[test]
    fn mixed_or_newer_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        six_records(&path);
        let state = std::fs::read(&path).unwrap();
        let journal_path = with_suffix(&path, ".journal");
        let journal = std::fs::read(&journal_path).unwrap();

        std::fs::write(
            &journal_path,
            b"{\"change\":\"networking\",\"version\":null}\n",
        )
        .unwrap();
        let e = reopen(&path).unwrap_err().to_string();
        assert!(e.contains("it is of format 1, older than its state"), "{e}");

        std::fs::write(&journal_path, &journal).unwrap();
        let model = &state[b"{\"format\":2,\"generation\":1,\"model\":".len()..state.len() - 1];
        std::fs::write(&path, model).unwrap();
        let e = reopen(&path).unwrap_err().to_string();
        assert!(e.contains("it is of format 2, newer than its state"), "{e}");

        std::fs::write(&path, b"{\"format\":3,\"generation\":1,\"model\":{}}").unwrap();
        let e = reopen(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "simulation state {} is of format 3, written by a newer kup (this one reads \
                 formats 1 to 2); run that version, or restore a state written by this one",
                path.display()
            )
        );
    }

    /// What a refusal says: what is wrong, to restore, and what deleting would lose.
    #[test]
    fn a_refusal_says_what_deleting_would_lose() {
        let e = StateError::Snapshot {
            path: "/d/cluster-state.json".into(),
            why: "EOF while parsing an object at line 1 column 9".into(),
        };
        assert_eq!(
            e.to_string(),
            "simulation state /d/cluster-state.json is unreadable: EOF while parsing an object \
             at line 1 column 9. It holds the simulated cluster's progress (the hosts' versions, \
             locks and pods); restore it and its journal from a backup. Deleting them would \
             start a fresh cluster at the cluster file's versions, behind every step kup's \
             database records as done"
        );
        let e = StateError::Journal {
            path: "/d/cluster-state.json.journal".into(),
            why: "record 3 of 6 acknowledged: its checksum does not match".into(),
        };
        assert!(!e.to_string().contains('\n'));
        assert!(
            e.to_string()
                .contains("Deleting the journal would lose those changes")
        );
    }

    /// The cost of a durable append (`cargo test -p kup-sim --release journal_append_cost --
    /// --ignored --nocapture`): a step's start or end, one host changed, with its two syncs,
    /// next to the same write without them.
    #[test]
    #[ignore = "a measurement"]
    fn journal_append_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        let (mut m, mut file) = StateFile::open(path, || {
            SimModel::from_inventory(&Inventory::default_cluster(), jiff::Timestamp::UNIX_EPOCH)
        })
        .unwrap();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[v.len() * 99 / 100])
        };
        let n = 400;
        let mut durable = Vec::new();
        let mut bytes = 0;
        for i in 0..n {
            let op = if i % 2 == 0 {
                lock("worker-0")
            } else {
                unlock("worker-0")
            };
            m.begin(&op);
            let end = file.end;
            let t = std::time::Instant::now();
            file.record(&mut m);
            durable.push(t.elapsed().as_secs_f64() * 1e6);
            bytes += file.end - end;
            m.end(&op, true, jiff::Timestamp::UNIX_EPOCH);
            file.record(&mut m);
        }
        let plain_file = File::create(dir.path().join("plain")).unwrap();
        let line = vec![b'x'; (bytes / n) as usize];
        let mut plain = Vec::new();
        for i in 0..n {
            let t = std::time::Instant::now();
            plain_file
                .write_all_at(&line, i * line.len() as u64)
                .unwrap();
            plain.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (d50, d99) = median(durable);
        let (p50, p99) = median(plain);
        println!(
            "journal append of {} bytes ({n} appends): durable median {d50:.0} us, p99 \
             {d99:.0} us; the same write without its syncs median {p50:.1} us, p99 {p99:.1} us",
            bytes / n
        );
    }
}
