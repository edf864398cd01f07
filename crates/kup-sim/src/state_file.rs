//! The simulated cluster on disk, so it outlives the process that simulates it: a snapshot of
//! the whole model (`PATH`) and a journal of the changes since (`PATH.journal`, one JSON line
//! per changed host or pod), so a change costs what it touched, not a rewrite of every pod. The
//! journal is folded into a new snapshot when it grows large, and at every start.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::model::{Change, SimModel};

/// A journal longer than this is folded into a new snapshot.
const JOURNAL_LIMIT: u64 = 64 << 20;

pub struct StateFile {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Option<File>,
    journal_bytes: u64,
    /// Why the last change could not be saved, until a save succeeds again.
    failed: Option<String>,
}

fn unreadable(path: &Path, why: impl std::fmt::Display) -> String {
    format!(
        "simulation state {} is unreadable: {why} (delete it and its journal to start the simulated cluster afresh)",
        path.display()
    )
}

impl StateFile {
    /// Loads the model from `path` and its journal, or makes it with `fresh` when there is no
    /// state yet; either way writes it back as one snapshot.
    pub fn open(
        path: PathBuf,
        fresh: impl FnOnce() -> SimModel,
    ) -> Result<(SimModel, StateFile), String> {
        let mut journal_path = path.clone().into_os_string();
        journal_path.push(".journal");
        let mut file = StateFile {
            path,
            journal_path: journal_path.into(),
            journal: None,
            journal_bytes: 0,
            failed: None,
        };
        let mut model = match File::open(&file.path) {
            Ok(f) => {
                let mut m: SimModel = serde_json::from_reader(std::io::BufReader::new(f))
                    .map_err(|e| unreadable(&file.path, e))?;
                file.replay(&mut m)?;
                m.settle_after_restart();
                m.rebuild();
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh(),
            Err(e) => return Err(unreadable(&file.path, e)),
        };
        file.snapshot(&mut model);
        // A cluster whose state cannot be kept would forget, at the next start, steps kup
        // recorded as done: refused now rather than found out then.
        if let Some(why) = file.failed.take() {
            return Err(format!(
                "cannot save the simulated cluster to {}: {why}",
                file.path.display()
            ));
        }
        Ok((model, file))
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

    fn replay(&self, m: &mut SimModel) -> Result<(), String> {
        let f = match File::open(&self.journal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(unreadable(&self.journal_path, e)),
        };
        let mut lines = BufReader::new(f).lines().peekable();
        while let Some(line) = lines.next() {
            let line = line.map_err(|e| unreadable(&self.journal_path, e))?;
            match serde_json::from_str::<Change>(&line) {
                Ok(c) => m.apply_change(c),
                // A crash in the middle of an append leaves half a last line: that change
                // was never acknowledged to anyone.
                Err(_) if lines.peek().is_none() => break,
                Err(e) => return Err(unreadable(&self.journal_path, e)),
            }
        }
        Ok(())
    }

    /// Writes the whole model (to a temporary file, renamed) and starts an empty journal.
    pub fn snapshot(&mut self, model: &mut SimModel) {
        // The snapshot holds every change: none is journaled (nor copied to be dropped).
        model.forget_changes();
        let tmp = self.path.with_extension("tmp");
        let written = File::create(&tmp)
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                serde_json::to_writer(&mut w, model).map_err(std::io::Error::other)?;
                w.flush()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .and_then(|()| File::create(&self.journal_path));
        match written {
            Ok(journal) => {
                self.journal = Some(journal);
                self.journal_bytes = 0;
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

    /// Appends what changed since the last call.
    pub fn record(&mut self, model: &mut SimModel) {
        if self.journal.is_none() || self.journal_bytes > JOURNAL_LIMIT {
            return self.snapshot(model);
        }
        let mut text = Vec::new();
        for c in model.take_changes() {
            if serde_json::to_writer(&mut text, &c).is_ok() {
                text.push(b'\n');
            }
        }
        if text.is_empty() {
            return;
        }
        let journal = self.journal.as_mut().expect("checked above");
        match journal.write_all(&text) {
            Ok(()) => self.journal_bytes += text.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.journal_path.display(), "cannot append to the simulated cluster's journal");
                self.journal = None;
                self.failed = Some(e.to_string());
            }
        }
    }
}
