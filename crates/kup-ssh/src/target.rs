//! Where a host is reached over SSH, and the `ssh` command line that reaches it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A host's `ssh:` entry in the hosts file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    /// A name or address the machine running kup can reach.
    pub address: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// The private key kup authenticates with.
    pub key_file: PathBuf,
    /// The `known_hosts` file that holds the host's key: a host whose key is not in it, or
    /// differs, is refused.
    pub known_hosts: PathBuf,
}

fn default_port() -> u16 {
    22
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("ssh address {0:?} is not a host name or address")]
    BadAddress(String),
    #[error("ssh user {0:?} is not a user name")]
    BadUser(String),
    #[error("ssh port 0 is not a port")]
    BadPort,
    #[error("ssh {0} is empty")]
    Empty(&'static str),
    #[error("{what} {path} cannot be read: {why}")]
    Unreadable {
        what: &'static str,
        path: String,
        why: String,
    },
}

/// What `ssh` is told on its command line, before the host: these override `~/.ssh/config`
/// (the first value of an option wins, and the command line comes first).
const PINNED: &[&str] = &[
    // No password or passphrase prompt: a daemon has no one to ask.
    "BatchMode=yes",
    // A host key must be known already; never added, never a changed one accepted.
    "StrictHostKeyChecking=yes",
    "GlobalKnownHostsFile=/dev/null",
    "UpdateHostKeys=no",
    // Only the host's key file, not every key of an agent.
    "IdentitiesOnly=yes",
    "ConnectTimeout=15",
    // A connection that dies while a long step runs is found within a minute.
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
    "LogLevel=ERROR",
];

impl SshTarget {
    /// Checks what can be checked before the first connection: names that `ssh` would take
    /// for options ([`check_fields`](Self::check_fields)), and files that cannot be read.
    pub fn validate(&self) -> Result<(), TargetError> {
        self.check_fields()?;
        readable("ssh key_file", &self.key_file)?;
        readable("ssh known_hosts", &self.known_hosts)?;
        Ok(())
    }

    /// The fields alone, without touching the files they name (a file read from elsewhere
    /// has its relative paths resolved before [`validate`](Self::validate)).
    pub fn check_fields(&self) -> Result<(), TargetError> {
        for (field, path) in [
            ("key_file", &self.key_file),
            ("known_hosts", &self.known_hosts),
        ] {
            if path.as_os_str().is_empty() {
                return Err(TargetError::Empty(field));
            }
        }
        let plain = |s: &str, extra: &[char]| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c))
        };
        // Host names, IPv4 and IPv6 addresses (with ':' and, for a zone, '%').
        if !plain(&self.address, &[':', '%']) {
            return Err(TargetError::BadAddress(self.address.clone()));
        }
        if !plain(&self.user, &[]) {
            return Err(TargetError::BadUser(self.user.clone()));
        }
        if self.port == 0 {
            return Err(TargetError::BadPort);
        }
        Ok(())
    }

    /// `user@address:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// The arguments of `ssh` that run `command` (a line for the remote shell) on this host.
    pub fn ssh_args(&self, command: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        for o in PINNED {
            args.push("-o".into());
            args.push((*o).into());
        }
        let mut known = OsString::from("UserKnownHostsFile=");
        known.push(&self.known_hosts);
        args.extend(["-o".into(), known, "-i".into()]);
        args.push(self.key_file.clone().into());
        args.extend([
            "-p".into(),
            self.port.to_string().into(),
            "-l".into(),
            self.user.clone().into(),
            // Nothing after this is an option of ssh's.
            "--".into(),
            self.address.clone().into(),
            command.into(),
        ]);
        args
    }
}

fn readable(what: &'static str, path: &Path) -> Result<(), TargetError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| TargetError::Unreadable {
            what,
            path: path.display().to_string(),
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(address: &str, user: &str) -> SshTarget {
        SshTarget {
            address: address.into(),
            port: 2222,
            user: user.into(),
            key_file: "/dev/null".into(),
            known_hosts: "/dev/null".into(),
        }
    }

    #[test]
    fn names_that_ssh_would_take_for_options_are_refused() {
        let cases = [
            ("worker-0.example.com", "kup", Ok(())),
            ("10.0.0.7", "root", Ok(())),
            ("fe80::1%eth0", "kup_admin", Ok(())),
            ("-oProxyCommand=sh", "kup", Err("is not a host name")),
            ("", "kup", Err("is not a host name")),
            ("host name", "kup", Err("is not a host name")),
            ("host;reboot", "kup", Err("is not a host name")),
            ("worker-0", "-lroot", Err("is not a user name")),
            ("worker-0", "a b", Err("is not a user name")),
            ("worker-0", "", Err("is not a user name")),
        ];
        for (address, user, want) in cases {
            let got = target(address, user).validate().map_err(|e| e.to_string());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(w)) => assert!(e.contains(w), "{address} {user}: {e}"),
                (got, want) => panic!("{address} {user}: {got:?}, expected {want:?}"),
            }
        }
        let mut t = target("worker-0", "kup");
        t.port = 0;
        assert_eq!(t.validate(), Err(TargetError::BadPort));
        t.port = 22;
        t.key_file = "/nonexistent/id_ed25519".into();
        let e = t.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("ssh key_file /nonexistent/id_ed25519 cannot be read: "),
            "{e}"
        );
    }

    #[test]
    fn the_command_line_pins_host_key_checking_before_the_host() {
        let args: Vec<String> = target("worker-0", "kup")
            .ssh_args("kubeadm upgrade node")
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let line = args.join(" ");
        assert!(line.starts_with("-o BatchMode=yes -o StrictHostKeyChecking=yes "));
        assert!(line.contains("-o UserKnownHostsFile=/dev/null -i /dev/null -p 2222 -l kup"));
        assert!(line.ends_with("-- worker-0 kubeadm upgrade node"), "{line}");
        // The command is one argument: ssh passes it to the remote shell as it is.
        assert_eq!(args.last().unwrap(), "kubeadm upgrade node");
    }
}
