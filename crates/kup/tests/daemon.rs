//! The daemon as a careless operator or an attacker meets it: two daemons on one directory,
//! a lost or read-only database, bad configuration, bad token files, connections that never
//! finish, a crash in the middle of a host action, a closed pipe; HTTPS that only a client
//! trusting its CA gets through, and bad certificate and key files.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Whether the data directory holds anything but what `allowed` names.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A second daemon on a data directory (or a database) in use exits at once, names the
/// process that holds it, and changes nothing: no recovery, no step marked failed.
#[test]
fn a_second_daemon_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "1");
    let data = dir.path().join("kup-data");
    ok(&d, "host-lock worker-0"); // 45 s at time scale 1: in flight throughout
    let before = events(&d);
    let pid = d.child.id();

    let err = serve_refused(&[
        os("--data-dir"),
        data.as_os_str(),
        os("--time-scale"),
        os("0"),
    ]);
    assert_eq!(
        err,
        format!(
            "Error: data directory {} is in use by process {pid}\n",
            data.display()
        )
    );
    // The same port as the first daemon: refused as well, still changing nothing.
    let addr = d.url.trim_start_matches("http://").to_string();
    let err = Command::new(KUP)
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(1));
    // Another data directory naming the same database.
    let db = format!("sqlite://{}", data.join("kup.db").display());
    let err = serve_refused(&[
        os("--data-dir"),
        dir.path().join("other").as_os_str(),
        os("--db"),
        os(&db),
    ]);
    assert!(
        err.contains(&format!(
            "database {} is in use by process {pid}",
            data.join("kup.db").display()
        )),
        "{err}"
    );

    assert_eq!(events(&d), before, "the first daemon's log is untouched");
    let hosts: serde_json::Value =
        serde_json::from_str(&ok(&d, "host-show worker-0 --format json")).unwrap();
    assert_eq!(hosts["task"], "Locking", "the lock still runs");
}

/// An emptied or deleted database in a data directory that was in use is not silently a new,
/// empty store: the daemon refuses and says how to proceed; `--init` starts afresh on
/// purpose, and never over a database that exists.
#[test]
fn a_lost_database_is_refused_until_init() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    let db = data.join("kup.db");
    let d = serve(dir.path(), "0");
    ok(
        &d,
        &format!("sw-patch upload {}", patch_file("K8S-1.16.2-PLATFORM")),
    );
    drop(d); // SIGKILL

    let data_arg = [os("--data-dir"), data.as_os_str()];
    std::fs::write(&db, "").unwrap();
    let err = serve_refused(&data_arg);
    assert_eq!(
        err,
        format!(
            "Error: database {} is empty, but data directory {} was in use (it holds cluster-state.json, cluster-state.json.journal, patches): the upgrade's state, patches and history would be lost; restore the database from a backup, or start with --init to begin again with an empty store\n",
            db.display(),
            data.display()
        )
    );
    std::fs::remove_file(&db).unwrap();
    let err = serve_refused(&data_arg);
    assert!(
        err.contains(&format!("database {} is missing", db.display())),
        "{err}"
    );
    assert!(!db.exists(), "nothing was created");

    let d = serve_with(dir.path(), "0", &["--init"]);
    let patches: serde_json::Value =
        serde_json::from_str(&ok(&d, "sw-patch query --format json")).unwrap();
    assert_eq!(patches, serde_json::json!([]), "a new, empty store");
    drop(d);
    let err = serve_refused(&[data_arg[0], data_arg[1], os("--init")]);
    assert!(err.contains("already holds one"), "{err}");
}

/// A database kup cannot write is refused at start, not answered with 500 at every write.
#[test]
fn a_read_only_database_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    std::fs::create_dir(&data).unwrap();
    // Root writes whatever the permissions say: run the daemon as nobody then.
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let wrapper: &[&str] = if root {
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        for p in [dir.path(), &data] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]
    } else {
        &[]
    };
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "admin 0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token_arg = ["--token-file", tokens.to_str().unwrap()];
    let mut d = serve_as(wrapper, dir.path(), "0", &token_arg);
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let db = data.join("kup.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();

    let mut cmd = match wrapper.split_first() {
        Some((p, args)) => {
            let mut c = Command::new(p);
            c.args(args).arg(KUP);
            c
        }
        None => Command::new(KUP),
    };
    let out = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(token_arg)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "Error: database {} is read-only: kup must be able to write it and its directory (check their owner and permissions)\n",
            db.display()
        )
    );
}

/// A bad admin token file is refused with a clear reason for each case, before anything else
/// is created or recovered.
#[test]
fn bad_admin_token_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    let token = data.join("admin-token");
    type Setup = fn(&Path);
    let cases: [(&str, Setup, &str); 6] = [
        ("empty", |p| std::fs::write(p, "").unwrap(), "it is empty"),
        (
            "whitespace",
            |p| std::fs::write(p, " \n\t\n").unwrap(),
            "it is empty",
        ),
        (
            "binary",
            |p| std::fs::write(p, [0xff, 0x00, 0xfe]).unwrap(),
            "holds binary data, not text",
        ),
        (
            "one character",
            |p| std::fs::write(p, "a\n").unwrap(),
            "a token needs at least 16 characters",
        ),
        (
            "a directory",
            |p| std::fs::create_dir(p).unwrap(),
            "is a directory",
        ),
        (
            "/dev/null",
            |p| std::os::unix::fs::symlink("/dev/null", p).unwrap(),
            "is not a regular file",
        ),
    ];
    for (what, setup, says) in cases {
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir(&data).unwrap();
        setup(&token);
        let err = serve_refused(&[os("--data-dir"), data.as_os_str()]);
        assert!(
            err.contains(&format!("admin token file {}", token.display())) && err.contains(says),
            "{what}: {err}"
        );
        assert_eq!(
            files_in(&data),
            ["admin-token"],
            "{what}: nothing else is written"
        );
    }
}

/// A client that sends half its headers, or nothing at all, is dropped after the header-read
/// timeout; beyond the connection cap, new connections wait until one closes.
#[test]
fn slow_and_idle_connections_are_dropped_and_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve_with(dir.path(), "0", &["--header-read-timeout", "1"]);
    let addr = d.url.trim_start_matches("http://").to_string();
    let closed_within = |mut s: TcpStream, what: &str| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {} // Closed, perhaps after an error reply.
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{what}: still open after 10 s"
            ),
        }
    };
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: kup\r\n")
        .unwrap();
    closed_within(half, "half the headers");
    closed_within(TcpStream::connect(&addr).unwrap(), "an idle connection");
    drop(d);

    let dir = tempfile::tempdir().unwrap();
    let d = serve_with(dir.path(), "0", &["--max-connections", "2"]);
    let addr = d.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200)); // both accepted
    let mut third = TcpStream::connect(&addr).unwrap(); // queued by the kernel
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: kup\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = Vec::new();
    assert!(
        third.read_to_end(&mut buf).is_err() && buf.is_empty(),
        "served beyond the cap"
    );
    drop(idle);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    third.read_to_end(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

/// A daemon killed in the middle of a lock: at restart the log says what became of it, and
/// the lock can be re-done.
#[test]
fn a_lock_interrupted_by_a_crash_is_settled_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = serve(dir.path(), "1");
    ok(&d, "host-lock worker-0");
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    drop(d);
    let d = serve(dir.path(), "0");
    let settled: Vec<String> = events(&d)
        .iter()
        .filter(|e| e["kind"] == "recovery")
        .map(|e| format!("{}: {}", e["subject"], e["message"]))
        .collect();
    assert_eq!(
        settled,
        [
            "\"worker-0\": \"lock worker-0 was in flight at restart and did not finish (worker-0 is not locked); marked failed\""
        ]
    );
    ok(&d, "host-lock worker-0 --wait");
    let host: serde_json::Value =
        serde_json::from_str(&ok(&d, "host-show worker-0 --format json")).unwrap();
    assert_eq!(host["administrative"], "locked");
}

/// Output to a pipe that closed ends quietly (exit 0, no panic); data printed to a terminal
/// never carries control characters.
#[test]
fn closed_pipes_and_control_characters() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let mut child = Command::new(KUP)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // Any other write error is one: the output a script relies on would be cut short.
    let full = Command::new(KUP)
        .args(["completions", "bash"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&full.stderr)
            .starts_with("Error: cannot write the output: No space left on device"),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    let r = kup(&d, "host-show \u{1b}[31mRED\u{7}");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "Error: Host \\u001b[31mRED\\u0007 not found\n");
}

/// `--format json` always prints JSON, confirmations included.
#[test]
fn confirmations_follow_the_requested_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    let platform = patch_file("K8S-1.16.2-PLATFORM");
    let up: serde_json::Value = serde_json::from_str(&ok(
        &d,
        &format!("sw-patch upload {platform} --format json"),
    ))
    .unwrap();
    assert_eq!(up[0]["patch_id"], "K8S-1.16.2-PLATFORM");
    assert_eq!(up[0]["state"], "available");
    let applied: serde_json::Value =
        serde_json::from_str(&ok(&d, "sw-patch apply K8S-1.16.2-PLATFORM --format json")).unwrap();
    assert_eq!(applied["state"], "partial-apply");
    let removed = ok(&d, "sw-patch remove K8S-1.16.2-PLATFORM --format yaml");
    assert!(
        removed.contains("patch_id: K8S-1.16.2-PLATFORM"),
        "{removed}"
    );
    let deleted: serde_json::Value =
        serde_json::from_str(&ok(&d, "sw-patch delete K8S-1.16.2-PLATFORM --format json")).unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"patch_id": "K8S-1.16.2-PLATFORM", "deleted": true})
    );
    assert_eq!(
        ok(&d, &format!("sw-patch upload {platform}")),
        "K8S-1.16.2-PLATFORM is now uploaded\n"
    );
}

/// Every other name of a database in use meets the same lock: a symbolic link to it (its
/// real path's lock file) and a hard link (the database file itself is locked).
#[test]
fn other_names_of_a_database_in_use_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    let db = dir.path().join("kup-data/kup.db");
    let symlink = dir.path().join("link.db");
    std::os::unix::fs::symlink(&db, &symlink).unwrap();
    let hardlink = dir.path().join("hard.db");
    std::fs::hard_link(&db, &hardlink).unwrap();
    for (name, other) in [(&symlink, "d2"), (&hardlink, "d3")] {
        let url = format!("sqlite://{}", name.display());
        let err = serve_refused(&[
            os("--data-dir"),
            dir.path().join(other).as_os_str(),
            os("--db"),
            os(&url),
        ]);
        assert!(err.contains("is in use by"), "{name:?}: {err}");
        assert!(
            !dir.path().join(other).exists(),
            "{other}: nothing left behind"
        );
    }
    assert_eq!(events(&d).len(), events(&d).len());
    drop(d);
}

/// A refused start leaves nothing behind, whatever step refused it, and never runs recovery
/// before a step that can still fail.
#[test]
fn a_refused_start_leaves_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    // A garbage database in a fresh directory: refused, and no token or state is written.
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("kup.db"), vec![0x5a; 10_000]).unwrap();
    let err = serve_refused(&[os("--data-dir"), data.as_os_str()]);
    assert!(err.contains("kup.db"), "{err}");
    assert_eq!(files_in(&data), ["kup.db"], "nothing else written");
    std::fs::remove_dir_all(&data).unwrap();
    // An in-memory or optioned database would lose everything at exit.
    for db in ["sqlite://:memory:", "sqlite://x.db?mode=memory"] {
        let err = serve_refused(&[os("--data-dir"), data.as_os_str(), os("--db"), os(db)]);
        assert!(err.contains("name a database file"), "{db}: {err}");
        assert!(!data.exists());
    }
    // A used directory, killed mid-lock, whose listen-address is in the way: refused before
    // recovery marks anything failed.
    let mut d = serve(dir.path(), "1");
    ok(&d, "host-lock worker-0");
    let before = events(&d).len();
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    drop(d);
    std::fs::remove_file(data.join("listen-address")).unwrap();
    std::fs::create_dir(data.join("listen-address")).unwrap();
    let err = serve_refused(&[os("--data-dir"), data.as_os_str()]);
    assert!(err.contains("listen-address"), "{err}");
    std::fs::remove_dir(data.join("listen-address")).unwrap();
    let d = serve(dir.path(), "0");
    let log = events(&d);
    assert_eq!(
        log.iter().filter(|e| e["kind"] == "recovery").count(),
        1,
        "recovered once, by the start that went through: {log:?}"
    );
    assert_eq!(log.len(), before + 1, "only the recovery's event");
}

/// A daemon whose stderr reader went away keeps serving, and stops cleanly.
#[test]
fn a_closed_stderr_does_not_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    let mut child = Command::new(KUP)
        .args(["serve", "--listen", "127.0.0.1:0", "--time-scale", "0"])
        .arg("--data-dir")
        .arg(&data)
        .env("KUP_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take()); // the reader is gone: every log line now meets EPIPE
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !data.join("listen-address").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "kup serve did not start"
        );
        assert!(child.try_wait().unwrap().is_none(), "kup serve exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!(
        "http://{}",
        std::fs::read_to_string(data.join("listen-address"))
            .unwrap()
            .trim()
    );
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let out = Command::new(KUP)
        .args([
            "host-show",
            "worker-9",
            "--url",
            &url,
            "--token",
            token.trim(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: Host worker-9 not found\n"
    );
    // SIGTERM: a graceful stop, exit status 0.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A full disk: writes are refused with the reason and `/healthz` says so; once there is room
/// again, everything works without a restart. Needs a tmpfs mount (root); skipped otherwise.
#[test]
fn a_full_disk_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let d = serve(&mnt, "0");
    ok(&d, "host-lock worker-0 --wait");
    ok(&d, "host-unlock worker-0 --wait");
    let healthz = |d: &Daemon| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}/healthz", d.url))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    // Fill the disk.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", mnt.join("fill").display()))
        .args(["bs=4k", "status=none"])
        .status();
    let r = kup(&d, "host-lock worker-0");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("full") || r.stderr.contains("space"),
        "{}",
        r.stderr
    );
    if Command::new("curl").arg("--version").output().is_ok() {
        assert_eq!(healthz(&d), "503");
    }
    std::fs::remove_file(mnt.join("fill")).unwrap();
    ok(&d, "host-lock worker-0 --wait");
    ok(&d, "host-unlock worker-0 --wait");
    if Command::new("curl").arg("--version").output().is_ok() {
        assert_eq!(healthz(&d), "200");
    }
}

/// The one `Error:` line of a command that failed.
fn error_line(r: &Run) -> &str {
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.starts_with("Error: ") && r.stderr.lines().count() == 1,
        "{:?}",
        r.stderr
    );
    r.stderr.trim_end()
}

/// With `--tls-cert` and `--tls-key` the daemon serves HTTPS only: the CLI gets through with
/// the CA that signed the certificate (`--ca-file` or `KUP_CA_FILE`), by address or by name,
/// reading and changing; without it, or with another CA, it refuses with a certificate error;
/// plain HTTP to the port gets one error reply saying to use https:// and nothing of the API;
/// a bad CA file is one error line. A stop is still graceful, even with a client that
/// connected and never said hello.
#[test]
fn https_serves_whoever_trusts_its_ca_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint_pki(&dir.path().join("pki"));
    let other = mint_pki(&dir.path().join("other"));
    let mut d = serve_with(
        dir.path(),
        "0",
        &[
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
        ],
    );
    let addr = d.url.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let by_ip = format!("https://{addr}");
    let by_name = format!("https://localhost:{port}");
    let ca_flag = [os("--ca-file"), pki.ca.as_os_str()];

    let r = kup_at(
        &by_ip,
        &d.token,
        &[],
        &[ca_flag[0], ca_flag[1], os("host-list")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("| controller-0 |"), "{}", r.stdout);
    let env = [("KUP_CA_FILE", pki.ca.as_os_str())];
    let r = kup_at(&by_name, &d.token, &env, &[os("kube-upgrade-show")]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "A kubernetes upgrade is not in progress\n", "")
    );
    let r = kup_at(&by_name, &d.token, &env, &[os("host-lock"), os("worker-0")]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Not trusted: the system's CAs do not know the test CA, nor does another one.
    for env in [vec![], vec![("KUP_CA_FILE", other.ca.as_os_str())]] {
        let r = kup_at(&by_ip, &d.token, &env, &[os("host-list")]);
        assert_eq!(
            error_line(&r),
            format!(
                "Error: cannot reach kup at {by_ip}: its TLS certificate is not trusted: invalid peer certificate: UnknownIssuer (to trust the CA that signed it, pass --ca-file FILE or set KUP_CA_FILE)"
            )
        );
        assert!(r.stdout.is_empty());
    }

    // Plain HTTP: refused by the CLI with the reason, and never answered with the API.
    let r = kup_at(&d.url, &d.token, &[], &[os("host-list")]);
    assert_eq!(
        error_line(&r),
        "Error: This port serves HTTPS only: use an https:// URL (and --ca-file if its certificate is signed by a private CA)"
    );
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        plain,
        "GET /v1/ihosts HTTP/1.1\r\nHost: kup\r\nX-Auth-Token: {}\r\n\r\n",
        d.token
    )
    .unwrap();
    let mut reply = String::new();
    plain.read_to_string(&mut reply).unwrap(); // the daemon closes it
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(reply.contains("HTTPS only"), "{reply}");
    assert!(!reply.contains("controller-0"), "{reply}");

    // A CA file that is missing, holds no certificate or a broken one: one line, no request.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (file, want) in [
        (
            &missing,
            format!(
                "Error: cannot read CA file {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            &pki.key,
            format!(
                "Error: CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                pki.key.display()
            ),
        ),
        (
            &garbage,
            format!(
                "Error: CA file {} holds a certificate that cannot be trusted: it cannot be used (BadEncoding)",
                garbage.display()
            ),
        ),
    ] {
        let r = kup_at(
            &by_ip,
            &d.token,
            &[],
            &[os("--ca-file"), file.as_os_str(), os("host-list")],
        );
        assert_eq!(error_line(&r), want);
    }

    // A client that connects and never says hello does not hold up a stop.
    let _silent = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stopping = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(d.child.wait().unwrap().code(), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        stopping.elapsed()
    );
}

/// A TLS handshake is held to the header-read timeout: a client that connects and sends
/// nothing, or half a hello, is dropped.
#[test]
fn a_stalled_tls_handshake_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint_pki(&dir.path().join("pki"));
    let d = serve_with(
        dir.path(),
        "0",
        &[
            "--header-read-timeout",
            "1",
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
        ],
    );
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut half = TcpStream::connect(&addr).unwrap();
    // The start of a handshake record, and nothing more.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    for (mut s, what) in [
        (half, "half a hello"),
        (TcpStream::connect(&addr).unwrap(), "nothing"),
    ] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let read = s.read_to_end(&mut buf);
        assert!(
            read.is_ok()
                || !matches!(
                    read.unwrap_err().kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            "{what}: still open after 10 s"
        );
    }
}

/// Bad `--tls-cert`/`--tls-key` files stop the daemon before it creates anything, with one
/// line that names the file and the fault; one flag without the other is a usage error.
#[test]
fn bad_tls_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint_pki(&dir.path().join("pki"));
    let other = mint_pki(&dir.path().join("other"));
    let data = dir.path().join("kup-data");
    let missing = dir.path().join("missing.pem");
    let truncated = dir.path().join("truncated.pem");
    let cert_text = std::fs::read_to_string(&pki.cert).unwrap();
    std::fs::write(&truncated, &cert_text[..cert_text.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cases: [(&Path, &Path, String); 7] = [
        (
            &missing,
            &pki.key,
            format!(
                "cannot read TLS certificate {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            &pki.cert,
            &missing,
            format!(
                "cannot read TLS key {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            &pki.key,
            &pki.key,
            format!(
                "TLS certificate {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                pki.key.display()
            ),
        ),
        (
            &pki.cert,
            &pki.cert,
            format!(
                "TLS key {} holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
                pki.cert.display()
            ),
        ),
        (
            &truncated,
            &pki.key,
            format!(
                "TLS certificate {} is not valid PEM: a section has no END line",
                truncated.display()
            ),
        ),
        (
            &garbage,
            &pki.key,
            format!(
                "TLS certificate {}: it cannot be used (BadEncoding)",
                garbage.display()
            ),
        ),
        (
            &pki.cert,
            &other.key,
            format!(
                "TLS key {} does not match certificate {}",
                other.key.display(),
                pki.cert.display()
            ),
        ),
    ];
    for (cert, key, want) in cases {
        let err = serve_refused(&[
            os("--data-dir"),
            data.as_os_str(),
            os("--tls-cert"),
            cert.as_os_str(),
            os("--tls-key"),
            key.as_os_str(),
        ]);
        assert_eq!(err, format!("Error: {want}\n"));
        assert!(!data.exists(), "nothing was created");
    }
    for flag in ["--tls-cert", "--tls-key"] {
        let out = Command::new(KUP)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg(flag)
            .arg(&pki.cert)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} alone");
        assert!(!data.exists(), "nothing was created");
    }
}

/// Stops the daemon as an operator or a service manager would (SIGTERM): exit status 0.
fn stop(mut d: Daemon) {
    Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(d.child.wait().unwrap().code(), Some(0), "a clean stop");
}

/// The files of a data directory that a refused start must leave as they were, with their
/// contents (`None`: absent).
fn contents(data: &Path, names: &[&str]) -> Vec<(String, Option<Vec<u8>>)> {
    names
        .iter()
        .map(|n| (n.to_string(), std::fs::read(data.join(n)).ok()))
        .collect()
}

/// A database damaged after a clean stop (its write-ahead log folded in, so the damage is in
/// the file itself): pages overwritten in the middle, the file cut in half, a garbage header.
/// Each start is refused with one line saying what SQLite found and what to do, and changes
/// nothing: the file, the simulated cluster and, once the good file is back, the log.
#[test]
fn a_damaged_database_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    let db = data.join("kup.db");
    let cluster =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/standard-50-workers.yaml");
    let cluster_arg = ["--cluster", cluster.to_str().unwrap()];
    let d = serve_with(dir.path(), "0", &cluster_arg);
    ok(&d, "upgrade online --to v1.16.2");
    let log = events(&d);
    stop(d);
    // A clean stop folds the write-ahead log into the file: copying kup.db alone is a backup.
    let wal = data.join("kup.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} is left after a clean stop",
        wal.display()
    );
    let good = std::fs::read(&db).unwrap();
    let pages = good.len() / 4096;
    assert!(pages > 40, "{pages} pages");
    let others = [
        "cluster-state.json",
        "cluster-state.json.journal",
        "admin-token",
    ];
    let before = contents(&data, &others);

    type Damage = fn(&mut Vec<u8>, usize);
    let cases: [(&str, Damage, &str); 3] = [
        (
            "pages overwritten in the middle",
            |b, n| b[n / 2 * 4096..(n / 2 + 4) * 4096].fill(0xa5),
            "",
        ),
        (
            "cut in half",
            |b, _| b.truncate(b.len() / 2),
            "database disk image is malformed",
        ),
        (
            "a garbage header",
            |b, _| b[..100].fill(0x5a),
            "file is not a database",
        ),
    ];
    let args = [
        os("--data-dir"),
        data.as_os_str(),
        os(cluster_arg[0]),
        os(cluster_arg[1]),
    ];
    for (case, damage, why) in cases {
        let mut bytes = good.clone();
        damage(&mut bytes, pages);
        std::fs::write(&db, &bytes).unwrap();
        let err = serve_refused(&args);
        let found = err
            .strip_prefix(&format!("Error: database {} is damaged (", db.display()))
            .and_then(|e| {
                e.strip_suffix(
                    "): restore it from a backup; kup does not start on a damaged store\n",
                )
            });
        // SQLite's findings name pages and trees, which depend on the layout.
        assert!(
            found.is_some_and(|f| if why.is_empty() {
                !f.is_empty()
            } else {
                f == why
            }),
            "{case}: {err}"
        );
        assert!(
            std::fs::read(&db).unwrap() == bytes,
            "{case}: the file changed"
        );
        assert_eq!(contents(&data, &others), before, "{case}");
    }
    std::fs::write(&db, &good).unwrap();
    let d = serve_with(dir.path(), "0", &cluster_arg);
    assert_eq!(events(&d), log, "the good file, as it was");
}

/// The simulated cluster's state (the snapshot `cluster-state.json` and its journal) cut,
/// damaged or lost under a store that recorded steps on it: the start is refused with the
/// reason on one line, no fresh cluster takes its place, and nothing changes: restored, the
/// same daemon goes on as before. A journal that lost acknowledged records at its end (cut at a
/// line's end) is refused too: its header counts them. `--init` (the database moved away)
/// begins again on purpose.
#[test]
fn a_damaged_or_lost_cluster_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kup-data");
    let state = data.join("cluster-state.json");
    let journal = data.join("cluster-state.json.journal");
    let d = serve(dir.path(), "0");
    ok(&d, "host-lock worker-0 --wait");
    ok(&d, "host-unlock worker-0 --wait");
    ok(&d, "host-lock worker-1 --wait");
    let log = events(&d);
    stop(d);
    let good_state = std::fs::read(&state).unwrap();
    let good_journal = std::fs::read(&journal).unwrap();
    // Two header slots, then a record per change.
    assert!(
        good_journal.iter().filter(|b| **b == b'\n').count() >= 4,
        "a journal of several changes"
    );
    let files = ["cluster-state.json", "cluster-state.json.journal", "kup.db"];

    type Damage = fn(&Path, &Path);
    let n = log.len();
    let damaged = |why: &str| {
        format!(
            "the journal {} of the simulated cluster's state is damaged: {why}",
            journal.display()
        )
    };
    let cases: [(&str, Damage, String); 7] = [
        (
            "the state cut in half",
            |s, _| {
                let b = std::fs::read(s).unwrap();
                std::fs::write(s, &b[..b.len() / 2]).unwrap();
            },
            format!(
                "simulation state {} is unreadable: EOF while parsing",
                state.display()
            ),
        ),
        (
            "zeros in the middle of the state",
            |s, _| {
                let mut b = std::fs::read(s).unwrap();
                let mid = b.len() / 2;
                b[mid..mid + 64].fill(0);
                std::fs::write(s, &b).unwrap();
            },
            format!("simulation state {} is unreadable: ", state.display()),
        ),
        (
            "a flipped byte in the middle of the journal",
            |_, j| {
                let mut b = std::fs::read(j).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0x01;
                std::fs::write(j, &b).unwrap();
            },
            damaged("record "),
        ),
        (
            "the journal's last record lost, cut at a line's end",
            |_, j| {
                let b = std::fs::read(j).unwrap();
                let last = b[..b.len() - 1].iter().rposition(|c| *c == b'\n').unwrap();
                std::fs::write(j, &b[..=last]).unwrap();
            },
            damaged("it ends after record "),
        ),
        (
            "the journal lost, its state left",
            |_, j| std::fs::remove_file(j).unwrap(),
            damaged("it is missing. "),
        ),
        (
            "the state lost, its journal left",
            |s, _| std::fs::remove_file(s).unwrap(),
            format!(
                "the simulated cluster's state {} is missing, but its journal {} is left: a fresh cluster would not have the steps kup recorded; restore the state from a backup, or move the database away too and start with --init to begin again",
                state.display(),
                journal.display()
            ),
        ),
        (
            "the state and its journal lost",
            |s, j| {
                std::fs::remove_file(s).unwrap();
                std::fs::remove_file(j).unwrap();
            },
            format!(
                "the simulated cluster's state {} is missing, but the store records {n} events on it",
                state.display()
            ),
        ),
    ];
    for (case, damage, want) in cases {
        std::fs::write(&state, &good_state).unwrap();
        std::fs::write(&journal, &good_journal).unwrap();
        damage(&state, &journal);
        let before = contents(&data, &files[..2]);
        let err = serve_refused(&[os("--data-dir"), data.as_os_str()]);
        assert!(err.starts_with(&format!("Error: {want}")), "{case}: {err}");
        assert_eq!(contents(&data, &files[..2]), before, "{case}: changed");
    }
    std::fs::write(&state, &good_state).unwrap();
    std::fs::write(&journal, &good_journal).unwrap();
    let d = serve(dir.path(), "0");
    assert_eq!(events(&d), log, "no recovery, no fresh start: as it was");
    let w1: serde_json::Value =
        serde_json::from_str(&ok(&d, "host-show worker-1 --format json")).unwrap();
    assert_eq!(w1["administrative"], "locked", "the cluster as it was");
    stop(d);

    std::fs::remove_file(&state).unwrap();
    std::fs::rename(data.join("kup.db"), dir.path().join("old.db")).unwrap();
    let d = serve_with(dir.path(), "0", &["--init"]);
    let w1: serde_json::Value =
        serde_json::from_str(&ok(&d, "host-show worker-1 --format json")).unwrap();
    assert_eq!(
        w1["administrative"], "unlocked",
        "a fresh cluster, on purpose"
    );
}

/// `ha-status` on one daemon (SQLite): it is alone and leads.
#[test]
fn a_single_daemon_leads_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path(), "0");
    let st: serde_json::Value = serde_json::from_str(&ok(&d, "ha-status --format json")).unwrap();
    assert_eq!(st["store"], "sqlite");
    assert_eq!(st["leader"], st["replica"]);
    assert_eq!(st["replicas"].as_array().unwrap().len(), 1);
    let table = ok(&d, "ha-status");
    assert!(table.contains("| leader "), "{table}");
    // Its metrics, without a token.
    let (status, text) = http_get(&d, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("kup_hosts{status=\"none\"} 6\n"), "{text}");
    assert!(text.contains("# TYPE kup_events_total counter\n"), "{text}");
}
