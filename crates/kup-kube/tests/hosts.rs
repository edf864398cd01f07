//! The hosts file: a good file reads as written, each bad one is refused with one line that
//! says where and what.

use std::path::Path;

use kup_kube::HostsFile;
use kup_types::Personality;

const GOOD: &str = "\
hosts:
  - name: cp-0
    personality: controller
    roles: [etcd]
    ssh:
      address: 192.0.2.10
      user: kup
      key_file: keys/id_ed25519
      known_hosts: /etc/kup/known_hosts
  - name: worker-0
    personality: worker
    ssh: {address: worker-0.example, port: 2222, user: kup, key_file: /k, known_hosts: /kh}
";

#[test]
fn a_good_file_reads_as_written() {
    let f = HostsFile::parse(GOOD).unwrap();
    assert_eq!(f.hosts.len(), 2);
    let cp = f.host("cp-0").unwrap();
    assert_eq!(cp.personality, Personality::Controller);
    assert_eq!(cp.roles, ["etcd"]);
    assert_eq!(cp.ssh.port, 22, "the default port");
    assert_eq!(cp.ssh.key_file, Path::new("keys/id_ed25519"));
    let w = f.host("worker-0").unwrap();
    assert_eq!(w.ssh.port, 2222);
    assert_eq!(w.ssh.address, "worker-0.example");
}

#[test]
fn relative_paths_are_taken_from_the_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.yaml");
    std::fs::write(&path, GOOD.replace("/etc/kup/known_hosts", "/dev/null")).unwrap();
    // The key is read at load: missing, the file is refused with the host and the path.
    let e = HostsFile::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with("hosts file, line 2: host cp-0: ssh key_file ")
            && e.contains("keys/id_ed25519 cannot be read: "),
        "{e}"
    );
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/id_ed25519"), "").unwrap();
    let e = HostsFile::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("host worker-0: ssh key_file /k cannot be read"),
        "{e}"
    );
    std::fs::write(
        &path,
        GOOD.replace("/etc/kup/known_hosts", "/dev/null").replace(
            "key_file: /k, known_hosts: /kh",
            "key_file: /dev/null, known_hosts: /dev/null",
        ),
    )
    .unwrap();
    let f = HostsFile::load(&path).unwrap();
    assert_eq!(
        f.host("cp-0").unwrap().ssh.key_file,
        dir.path().join("keys/id_ed25519")
    );
    assert_eq!(
        f.host("cp-0").unwrap().ssh.known_hosts,
        Path::new("/dev/null")
    );
    let missing = HostsFile::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(
        missing.to_string().starts_with("hosts file: cannot read "),
        "{missing}"
    );
}

fn host(name: &str, extra: &str, ssh: &str) -> String {
    format!("hosts:\n  - name: {name}\n    personality: worker\n{extra}    ssh: {{{ssh}}}\n")
}

const SSH: &str = "address: a, user: u, key_file: /k, known_hosts: /kh";

#[test]
fn bad_files_are_refused_with_one_line() {
    let twice = format!(
        "{}{}",
        host("w-0", "", SSH),
        &host("w-0", "", SSH)["hosts:\n".len()..]
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty list", "hosts: []\n".into(), "hosts file: it lists no hosts"),
        ("unknown top-level field", format!("{}extra: 1\n", host("w-0", "", SSH)), "unknown field `extra`"),
        ("unknown host field", host("w-0", "    active: true\n", SSH), "unknown field `active`"),
        ("unknown ssh field", host("w-0", "", &format!("{SSH}, password: x")), "unknown field `password`"),
        ("duplicate host", twice, "line 5: host w-0 is listed twice"),
        ("no known_hosts", host("w-0", "", "address: a, user: u, key_file: /k"), "missing field `known_hosts`"),
        ("no key file", host("w-0", "", "address: a, user: u, known_hosts: /kh"), "missing field `key_file`"),
        ("no user", host("w-0", "", "address: a, key_file: /k, known_hosts: /kh"), "missing field `user`"),
        ("no address", host("w-0", "", "user: u, key_file: /k, known_hosts: /kh"), "missing field `address`"),
        ("no ssh at all", "hosts:\n  - name: w-0\n    personality: worker\n".into(), "missing field `ssh`"),
        ("empty known_hosts", host("w-0", "", "address: a, user: u, key_file: /k, known_hosts: ''"), "line 2: host w-0: ssh known_hosts is empty"),
        ("blank address", host("w-0", "", "address: ' ', user: u, key_file: /k, known_hosts: /kh"), "host w-0: ssh address \" \" is not a host name or address"),
        ("port 0", host("w-0", "", &format!("{SSH}, port: 0")), "ssh port 0 is not a port"),
        ("port too large", host("w-0", "", &format!("{SSH}, port: 70000")), "line 4: invalid u16"),
        ("space in user", host("w-0", "", "address: a, user: 'u x', key_file: /k, known_hosts: /kh"), "ssh user \"u x\" is not a user name"),
        ("bad host name", host("W_0", "", SSH), "host name \"W_0\" is not valid"),
        ("bad personality", "hosts:\n  - name: w-0\n    personality: master\n    ssh: {address: a, user: u, key_file: /k, known_hosts: /kh}\n".into(), "unknown Personality \"master\""),
        ("bad role", host("w-0", "    roles: ['Not A Label']\n", SSH), "role \"Not A Label\" is not valid"),
        ("not yaml", "hosts: [\n".into(), "hosts file"),
    ];
    for (what, text, want) in cases {
        let e = HostsFile::parse(&text).expect_err(what).to_string();
        assert!(e.contains(want), "{what}: {e:?} should say {want:?}");
        assert!(e.starts_with("hosts file"), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: one line: {e:?}");
    }
}
