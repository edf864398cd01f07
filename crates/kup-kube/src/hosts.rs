//! The hosts file (`--hosts FILE`): the hosts of a real cluster, each named as its Node, with
//! its personality, roles and how to reach it over SSH. Parsed like the simulator's cluster
//! file (serde-saphyr, unknown fields refused, errors with their line).

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use kup_types::{Personality, names};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A problem in a hosts file, with the line it is on when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct HostsFileError {
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for HostsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "hosts file, line {l}: {}", self.message),
            None => write!(f, "hosts file: {}", self.message),
        }
    }
}

fn at<T>(s: &Spanned<T>, message: impl Into<String>) -> HostsFileError {
    HostsFileError {
        line: Some(s.referenced.line()),
        message: message.into(),
    }
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
    pub fn parse(source: &str) -> Result<HostsFile, HostsFileError> {
        let file: HostsFile = serde_saphyr::from_str(source).map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            let message = first.strip_prefix("error: ").unwrap_or(&first).to_string();
            match e.location() {
                Some(l) => HostsFileError {
                    line: Some(l.line()),
                    // The message already names the line; keep it once.
                    message: message
                        .strip_prefix(&format!("line {} column {}: ", l.line(), l.column()))
                        .unwrap_or(&message)
                        .to_string(),
                },
                None => HostsFileError {
                    line: None,
                    message,
                },
            }
        })?;
        file.validate()?;
        Ok(file)
    }

    /// Reads and parses `path`; relative key and known_hosts paths are taken from the file's
    /// directory, as a user writing the file next to their keys would expect.
    pub fn load(path: &Path) -> Result<HostsFile, HostsFileError> {
        let source = std::fs::read_to_string(path).map_err(|e| HostsFileError {
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        })?;
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

    fn validate(&self) -> Result<(), HostsFileError> {
        self.commands.validate().map_err(|e| HostsFileError {
            line: None,
            message: e.to_string(),
        })?;
        if self.hosts.is_empty() {
            return Err(HostsFileError {
                line: None,
                message: "it lists no hosts".into(),
            });
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
            let ssh = &h.ssh;
            let blank = [
                ("address", ssh.address.trim().is_empty()),
                ("user", ssh.user.trim().is_empty()),
                ("key_file", ssh.key_file.as_os_str().is_empty()),
                ("known_hosts", ssh.known_hosts.as_os_str().is_empty()),
            ];
            if let Some((field, _)) = blank.iter().find(|(_, b)| *b) {
                return Err(at(&h.name, format!("host {name}: ssh {field} is empty")));
            }
            if ssh.port == 0 {
                return Err(at(
                    &h.name,
                    format!("host {name}: ssh port 0 is not a port"),
                ));
            }
            if let Some(c) = [&ssh.address, &ssh.user]
                .iter()
                .flat_map(|s| s.chars())
                .find(|c| c.is_whitespace() || c.is_control())
            {
                return Err(at(
                    &h.name,
                    format!(
                        "host {name}: ssh address and user take no blank or control character ({c:?})"
                    ),
                ));
            }
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
