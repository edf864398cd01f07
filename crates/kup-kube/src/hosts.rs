//! The hosts file (`--hosts FILE`): the hosts of a real cluster, each named as its Node, with
//! its personality, roles and how to reach it over SSH. Parsed like the simulator's cluster
//! file (serde-saphyr, unknown fields refused, errors with their line).

use std::collections::BTreeSet;
use std::path::Path;

use kup_types::{Personality, names};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::file::FileError;

const FILE: &str = "hosts file";

fn at<T>(s: &Spanned<T>, message: impl Into<String>) -> FileError {
    FileError::at(FILE, s, message)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    pub hosts: Vec<HostEntry>,
    /// The commands of the host steps (kubeadm's procedure on Debian/Ubuntu by default).
    #[serde(default)]
    pub commands: kup_ssh::Commands,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// The host's Node name.
    pub name: Spanned<String>,
    /// On a kubeadm cluster the control-plane hosts are controllers.
    pub personality: Personality,
    #[serde(default)]
    pub roles: Vec<String>,
    pub ssh: SshTarget,
}

/// How to reach a host over SSH (`kup_ssh`): `known_hosts` is required, as kup never trusts
/// a host key it has not been given.
pub use kup_ssh::SshTarget;

impl HostsFile {
    /// Parses a hosts file's text; relative paths stay as written.
    pub fn parse(source: &str) -> Result<HostsFile, FileError> {
        let file: HostsFile = crate::file::parse(FILE, source)?;
        file.validate()?;
        Ok(file)
    }

    /// Reads and parses `path`; relative key and known_hosts paths are taken from the file's
    /// directory, as a user writing the file next to their keys would expect.
    pub fn load(path: &Path) -> Result<HostsFile, FileError> {
        let source = crate::file::read(FILE, path)?;
        let mut file = Self::parse(&source)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for h in &mut file.hosts {
            for p in [&mut h.ssh.key_file, &mut h.ssh.known_hosts] {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
            // The files themselves, now that their place is known: a key that cannot be read
            // is found at start, not at the first step.
            h.ssh
                .validate()
                .map_err(|e| at(&h.name, format!("host {}: {e}", h.name.value)))?;
        }
        Ok(file)
    }

    fn validate(&self) -> Result<(), FileError> {
        self.commands
            .validate()
            .map_err(|e| FileError::whole(FILE, e.to_string()))?;
        if self.hosts.is_empty() {
            return Err(FileError::whole(FILE, "it lists no hosts"));
        }
        let mut seen = BTreeSet::new();
        for h in &self.hosts {
            let name = &h.name.value;
            if let Some(why) = names::host_name_problem(name) {
                return Err(at(
                    &h.name,
                    format!("host name {name:?} is not valid: {why}"),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(at(&h.name, format!("host {name} is listed twice")));
            }
            h.ssh
                .check_fields()
                .map_err(|e| at(&h.name, format!("host {name}: {e}")))?;
            for role in &h.roles {
                if let Some(why) = names::label_problem(role) {
                    return Err(at(
                        &h.name,
                        format!("host {name}: role {role:?} is not valid: {why}"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name.value == name)
    }
}
