//! Host steps over SSH: how kup runs `kubeadm` and the package tools on a kubeadm cluster's
//! hosts.
//!
//! Through the system's OpenSSH client (`ssh`), not a Rust SSH library: it is the client
//! operators already trust, configure (jump hosts, agents, ciphers in `~/.ssh/config`) and
//! patch with their distribution, and it keeps kup's build free of a second SSH and crypto
//! stack. kup pins what matters for safety on its command line, where it overrides any
//! configuration file: a host key must be in the host's own `known_hosts` file (no blind trust,
//! no prompt), only the host's key file is offered, and nothing asks for a password.
//!
//! - [`target`]: where a host is reached (the hosts file's `ssh:` entry) and the `ssh`
//!   command line for it;
//! - [`run`]: one command, bounded by a deadline, its output kept, its failure classified;
//! - [`recipe`]: which commands each kind of step runs (kubeadm's upgrade procedure), as
//!   templates an operator can change.

pub mod recipe;
pub mod run;
pub mod target;

pub use recipe::{Commands, RecipeError};
pub use run::{Output, SshError, run, run_with_input};
pub use target::{SshTarget, TargetError};
