//! One command on a host: bounded by a deadline, its output kept (the tail, for the event
//! log), and a failure said as what it is — the host's key, the login, the network, the
//! deadline, or the command itself.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::target::SshTarget;

/// At most this much of each stream is kept: its end, where a failing tool says why.
pub const KEPT_BYTES: usize = 16 * 1024;

/// What a command printed, and how it exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// What the command said last, on one line: the end of its output, else of its errors.
    pub fn last_words(&self) -> String {
        let out = last_words(&self.stdout);
        if out.is_empty() {
            last_words(&self.stderr)
        } else {
            out
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot run ssh: {0}")]
    Spawn(String),
    #[error(
        "the host key of {host} is not the one in its known_hosts file, or is not there: {detail} \
         (add the host's key to the known_hosts file named in the hosts file; kup never trusts a \
         key it has not been given)"
    )]
    HostKey { host: String, detail: String },
    #[error("{host} refused kup's login: {detail}")]
    Login { host: String, detail: String },
    #[error("{host} cannot be reached over ssh: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("`{command}` on {host} did not finish within {seconds} s (stopped)")]
    TimedOut {
        host: String,
        command: String,
        seconds: u64,
    },
    #[error("`{command}` on {host} failed with exit code {code}: {detail}")]
    Failed {
        host: String,
        command: String,
        code: i32,
        detail: String,
        output: Box<Output>,
    },
}

/// Runs `command` (a line for the remote shell) on `target` through the system's `ssh`,
/// stopped when `timeout` passes. A command that exits non-zero is [`SshError::Failed`], with
/// its output.
///
/// A stopped `ssh` closes its connection; without a terminal, a remote command may still
/// finish on its own: every command kup runs is idempotent, and the caller reads the step's
/// effect back from the cluster rather than trusting an exit code.
pub async fn run(target: &SshTarget, command: &str, timeout: Duration) -> Result<Output, SshError> {
    run_with("ssh", target, command, None, timeout).await
}

/// [`run`] with `input` on the command's standard input (a file sent to the host).
pub async fn run_with_input(
    target: &SshTarget,
    command: &str,
    input: bytes::Bytes,
    timeout: Duration,
) -> Result<Output, SshError> {
    run_with("ssh", target, command, Some(input), timeout).await
}

/// [`run`] with another `ssh` program (a path), for tests and for systems where it is
/// elsewhere.
pub async fn run_with(
    program: &str,
    target: &SshTarget,
    command: &str,
    input: Option<bytes::Bytes>,
    timeout: Duration,
) -> Result<Output, SshError> {
    let mut child = Command::new(program)
        .args(target.ssh_args(command))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropped at the deadline, the child is killed rather than left running.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SshError::Spawn(format!("{program}: {e}")))?;
    // Written beside the wait, so that a command that stops reading cannot stall it; a short
    // write shows up as the command's own failure (it checks what it received).
    let feed = child.stdin.take().zip(input).map(|(mut stdin, bytes)| {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&bytes).await;
        })
    });
    let out = tokio::time::timeout(timeout, child.wait_with_output()).await;
    if let Some(feed) = feed {
        feed.abort();
    }
    let out = match out {
        Ok(out) => out.map_err(|e| SshError::Spawn(format!("{program}: {e}")))?,
        Err(_) => {
            return Err(SshError::TimedOut {
                host: target.display(),
                command: command.into(),
                seconds: timeout.as_secs(),
            });
        }
    };
    let output = Output {
        // Killed by a signal: no code; reported as ssh's own failure.
        code: out.status.code().unwrap_or(255),
        stdout: tail(&out.stdout),
        stderr: tail(&out.stderr),
    };
    if output.code == 0 {
        return Ok(output);
    }
    Err(classify(target, command, output))
}

/// ssh exits 255 for its own failures, which its last message says; anything else is the
/// command's exit code (a command that itself exits 255 without ssh's words is the command's).
fn classify(target: &SshTarget, command: &str, output: Output) -> SshError {
    let host = target.display();
    let detail = last_line(&output.stderr);
    if output.code == 255 {
        let says = |words: &[&str]| words.iter().any(|w| output.stderr.contains(w));
        if says(&[
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
        ]) {
            return SshError::HostKey { host, detail };
        }
        if says(&["Permission denied", "Too many authentication failures"]) {
            return SshError::Login { host, detail };
        }
        if says(&[
            "Connection refused",
            "Connection timed out",
            "Could not resolve hostname",
            "No route to host",
            "Network is unreachable",
            "Connection closed by",
            "Connection reset by",
            "Timeout, server",
        ]) {
            return SshError::Unreachable { host, detail };
        }
    }
    SshError::Failed {
        host,
        command: command.into(),
        code: output.code,
        detail: {
            let err = last_words(&output.stderr);
            if err.is_empty() {
                last_words(&output.stdout)
            } else {
                err
            }
        },
        output: Box::new(output),
    }
}

/// The end of a stream, as text: the last [`KEPT_BYTES`], cut at a character boundary.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= KEPT_BYTES {
        return text.into_owned();
    }
    let mut start = text.len() - KEPT_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &text[start..])
}

/// A failed command's last words, on one line: its last three lines that say something
/// (kubeadm ends its errors with a line on how to see the stack trace, which is left out).
fn last_words(text: &str) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("To see the stack trace of this error"))
        .take(3)
        .collect();
    lines.reverse();
    lines.join(" / ")
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_last_words_leave_kubeadms_stack_trace_hint_out() {
        let err = "[preflight] Running pre-flight checks.\n\n[upgrade/config] FATAL: this version of kubeadm only supports deploying clusters with the control plane version >= 1.29.0\nerror execution phase preflight: failed\nTo see the stack trace of this error execute with --v=5 or higher\n";
        assert_eq!(
            last_words(err),
            "[preflight] Running pre-flight checks. / [upgrade/config] FATAL: this version of kubeadm only supports deploying clusters with the control plane version >= 1.29.0 / error execution phase preflight: failed"
        );
        assert_eq!(last_words("\n\n"), "");
    }

    fn target() -> SshTarget {
        SshTarget {
            address: "worker-0".into(),
            port: 22,
            user: "kup".into(),
            key_file: "/k".into(),
            known_hosts: "/kh".into(),
        }
    }

    fn out(code: i32, stderr: &str) -> Output {
        Output {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn a_failure_is_said_as_what_it_is() {
        let cases = [
            (
                255,
                "Host key verification failed.\n",
                "the host key of kup@worker-0:22 is not the one",
            ),
            (
                255,
                "@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n...\nHost key verification failed.\n",
                "the host key of kup@worker-0:22",
            ),
            (
                255,
                "kup@worker-0: Permission denied (publickey).\n",
                "kup@worker-0:22 refused kup's login: kup@worker-0: Permission denied (publickey).",
            ),
            (
                255,
                "ssh: connect to host worker-0 port 22: Connection refused\n",
                "kup@worker-0:22 cannot be reached over ssh: ssh: connect to host worker-0 port 22: Connection refused",
            ),
            (
                255,
                "ssh: Could not resolve hostname worker-0: Name or service not known\n",
                "cannot be reached over ssh",
            ),
            (
                1,
                "[upgrade/version] FATAL: the --version argument is invalid\n",
                "`kubeadm upgrade node` on kup@worker-0:22 failed with exit code 1: [upgrade/version] FATAL: the --version argument is invalid",
            ),
            // A command's own 255, without ssh's words, is the command's.
            (
                255,
                "fatal: no such thing\n",
                "failed with exit code 255: fatal: no such thing",
            ),
        ];
        for (code, stderr, want) in cases {
            let e = classify(&target(), "kubeadm upgrade node", out(code, stderr)).to_string();
            assert!(e.starts_with(want) || e.contains(want), "{stderr:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn only_the_end_of_a_long_output_is_kept() {
        let long = "é".repeat(KEPT_BYTES);
        let kept = tail(long.as_bytes());
        assert!(kept.starts_with("[...]é"));
        assert!(kept.len() <= KEPT_BYTES + 5);
        assert_eq!(tail(b"short\n"), "short\n");
    }
}
