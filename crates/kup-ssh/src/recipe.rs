//! Which commands each kind of host step runs on a kubeadm cluster: kubeadm's own upgrade
//! procedure (kubernetes.io, "Upgrading kubeadm clusters"), as templates in the hosts file's
//! `commands:` section, defaulting to a Debian or Ubuntu host with the Kubernetes packages
//! from pkgs.k8s.io. Each template is one line for the remote shell; every one must be
//! idempotent (a step re-run after a crash runs it again).
//!
//! Placeholders: `{version}` (`v1.29.3`), `{version_number}` (`1.29.3`), `{minor}` (`v1.29`),
//! `{host}` (the Node's name), `{from_version}` (the version the host's control plane runs
//! before it moves, for the backup), `{backup_dir}` (the `backup_dir` setting),
//! `{image_repository}` (kubeadm-config's, or kubeadm's default registry.k8s.io). Their values are checked names,
//! versions and paths, and quoted for the shell all the same.
//!
//! The backups live in `{backup_dir}/VERSION/` on the control-plane hosts: each one's static
//! pod manifests (`manifests/`), and on the first one an etcd snapshot (`etcd.db`, for
//! disaster recovery: an abort does not rewind etcd) and kubeadm's configuration and add-ons
//! as they were (`addons.yaml`). A backup that exists is never overwritten, so a step re-run
//! after its upgrade began keeps the version before it; each file is written beside its place
//! and renamed into it, so a cut-off copy is never taken for a backup.

use serde::Deserialize;

use kup_types::KubeVersion;

/// The command templates of the host steps.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Commands {
    /// Run every command as root through `sudo -n` (for a login that is not root).
    pub sudo: bool,
    /// Installs the target's kubeadm (before images, and before each control plane's step).
    pub install_kubeadm: String,
    /// Pulls the target's control-plane images on a control-plane host.
    pub pull_images: String,
    /// Where the backups are kept on each control-plane host (an absolute path).
    pub backup_dir: String,
    /// Saves a control plane's static pod manifests, before it moves.
    pub backup: String,
    /// Saves etcd and kubeadm's configuration and add-ons, on the first control plane before
    /// `kubeadm upgrade apply`.
    pub backup_cluster: String,
    /// Puts a control plane's manifests of `{version}` back (an abort with rollback).
    pub restore: String,
    /// Puts kubeadm's configuration and add-ons of `{version}` back (an abort with rollback,
    /// on the host that holds the cluster backup).
    pub restore_addons: String,
    /// The first control plane.
    pub upgrade_apply: String,
    /// The other control planes, and each worker before its kubelet.
    pub upgrade_node: String,
    /// Installs the target's kubelet and kubectl, without restarting kubelet.
    pub install_kubelet: String,
    pub restart_kubelet: String,
    /// Prints the installed kubeadm's version (checked after each install: the step runs
    /// only with the kubeadm of its version).
    pub kubeadm_version: String,
    /// Prints the installed kubelet's version (checked after each install).
    pub kubelet_version: String,
    /// Where a patch's payload goes on a host, in place of `install_kubeadm` and
    /// `install_kubelet` when a kubeadm or kubelet patch delivers the version: its file
    /// `usr/bin/kubelet` becomes `{payload_root}/usr/bin/kubelet`. An absolute path, `/` by
    /// default; `{host}` may be part of it.
    pub payload_root: String,
}

/// The package list of pkgs.k8s.io that kubeadm's installation guide writes.
const APT_LIST: &str = "/etc/apt/sources.list.d/kubernetes.list";

impl Default for Commands {
    fn default() -> Self {
        // `--reinstall`: a patch's binary may have replaced the package's file since dpkg
        // installed that version, which apt would otherwise take as done.
        let pkg = |names: &str| {
            let pinned: Vec<String> = names
                .split(' ')
                .map(|n| format!("{n}='{{version_number}}-*'"))
                .collect();
            // pkgs.k8s.io has a repository per minor: pointed at the target's first (kubeadm's
            // "changing the package repository"), then the list read again.
            format!(
                "([ ! -f {APT_LIST} ] || sed -i 's#/v[0-9][0-9.]*/deb#/{{minor}}/deb#' {APT_LIST}) && apt-get update -q && apt-mark unhold {names} && apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades {} && apt-mark hold {names}",
                pinned.join(" ")
            )
        };
        let admin = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
        let etcd_tls = "--endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key";
        let from = "{backup_dir}/{from_version}";
        let to = "{backup_dir}/{version}";
        Commands {
            sudo: false,
            install_kubeadm: pkg("kubeadm"),
            pull_images: "kubeadm config images pull --kubernetes-version {version} --image-repository {image_repository}".into(),
            backup_dir: "/var/lib/kup/backup".into(),
            backup: format!(
                "mkdir -p {from} && (test -e {from}/manifests || (rm -rf {from}/manifests.part && cp -a /etc/kubernetes/manifests {from}/manifests.part && mv {from}/manifests.part {from}/manifests))"
            ),
            backup_cluster: format!(
                "(test -e {from}/etcd.db || (ETCDCTL_API=3 etcdctl {etcd_tls} snapshot save {from}/etcd.db.part && mv {from}/etcd.db.part {from}/etcd.db)) && (test -e {from}/addons.yaml || ({admin} -n kube-system get --ignore-not-found configmap/kubeadm-config configmap/kube-proxy daemonset/kube-proxy configmap/coredns deployment/coredns -o yaml > {from}/addons.yaml.part && mv {from}/addons.yaml.part {from}/addons.yaml))"
            ),
            // Every manifest but etcd's: etcd's data has moved on with the cluster (an etcd
            // member of an older minor refuses a newer cluster), and a restore keeps it.
            restore: format!(
                "test -d {to}/manifests && for f in {to}/manifests/*.yaml; do case $(basename \"$f\") in etcd.yaml) ;; *) cp -a \"$f\" /etc/kubernetes/manifests/ || exit 1;; esac; done"
            ),
            restore_addons: format!(
                "test -f {to}/addons.yaml && grep -v -e '^    resourceVersion:' -e '^    uid:' {to}/addons.yaml | {admin} apply -f -"
            ),
            upgrade_apply: "kubeadm upgrade apply {version} --yes".into(),
            upgrade_node: "kubeadm upgrade node".into(),
            install_kubelet: pkg("kubelet kubectl"),
            restart_kubelet: "systemctl daemon-reload && systemctl restart kubelet".into(),
            kubeadm_version: "kubeadm version -o short".into(),
            kubelet_version: "kubelet --version".into(),
            payload_root: "/".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error(
        "command template {name}: unknown placeholder {{{placeholder}}} (known: {{version}}, {{version_number}}, {{minor}}, {{host}}, {{from_version}}, {{backup_dir}}, {{image_repository}})"
    )]
    UnknownPlaceholder {
        name: &'static str,
        placeholder: String,
    },
    #[error("command template {name}: an unclosed {{")]
    Unclosed { name: &'static str },
    #[error("command template {name} is empty")]
    Empty { name: &'static str },
    #[error(
        "backup_dir {0:?} is not an absolute path of letters, digits and ./_- (it goes into commands)"
    )]
    BadBackupDir(String),
    #[error(
        "payload_root {0:?} is not an absolute path of letters, digits and ./_- (with {{host}} at most)"
    )]
    BadPayloadRoot(String),
}

/// The values a template's placeholders take.
#[derive(Clone, Debug)]
pub struct Vars<'a> {
    pub version: KubeVersion,
    pub from_version: KubeVersion,
    pub host: &'a str,
    /// Where the cluster's control-plane images come from (kubeadm-config's
    /// `imageRepository`, or kubeadm's default).
    pub image_repository: &'a str,
}

impl Commands {
    fn templates(&self) -> [(&'static str, &str); 12] {
        [
            ("install_kubeadm", &self.install_kubeadm),
            ("pull_images", &self.pull_images),
            ("backup", &self.backup),
            ("backup_cluster", &self.backup_cluster),
            ("restore", &self.restore),
            ("restore_addons", &self.restore_addons),
            ("upgrade_apply", &self.upgrade_apply),
            ("upgrade_node", &self.upgrade_node),
            ("install_kubelet", &self.install_kubelet),
            ("restart_kubelet", &self.restart_kubelet),
            ("kubeadm_version", &self.kubeadm_version),
            ("kubelet_version", &self.kubelet_version),
        ]
    }

    /// Checks every template when the hosts file is read, not when a step first needs one:
    /// each is rendered once with sample values, by the same code that renders it for a step.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let sample = Vars {
            version: KubeVersion::new(1, 0, 0),
            from_version: KubeVersion::new(1, 0, 0),
            host: "host",
            image_repository: "registry.k8s.io",
        };
        if !plain_path(&self.backup_dir) {
            return Err(RecipeError::BadBackupDir(self.backup_dir.clone()));
        }
        if !plain_path(&self.payload_root.replace("{host}", "host")) {
            return Err(RecipeError::BadPayloadRoot(self.payload_root.clone()));
        }
        for (name, t) in self.templates() {
            if t.trim().is_empty() {
                return Err(RecipeError::Empty { name });
            }
            self.render(name, &sample)?;
        }
        Ok(())
    }

    /// The command that puts one payload file (`path` under the patch's `files/`, `size`
    /// bytes, sent on its standard input) in its place under `payload_root` on `host`:
    /// written beside it, checked to be whole (a cut-off copy is never installed), made
    /// executable when it lives in a `bin` or `sbin` directory, and renamed over the old one
    /// (a running binary keeps its own copy until it restarts).
    pub fn install_file(&self, host: &str, path: &str, size: usize) -> Result<String, RecipeError> {
        let root = self.payload_root.replace("{host}", host);
        let bad = || RecipeError::BadPayloadRoot(self.payload_root.clone());
        if !plain_path(&root) {
            return Err(bad());
        }
        let target = format!("{}/{}", root.trim_end_matches('/'), path);
        let (dir, _) = target.rsplit_once('/').ok_or_else(bad)?;
        let dir = if dir.is_empty() { "/" } else { dir };
        let executable = dir.ends_with("/bin") || dir.ends_with("/sbin");
        let q = |s: &str| shlex::try_quote(s).map_or_else(|_| s.to_string(), |q| q.into_owned());
        let (dir, part, file) = (q(dir), q(&format!("{target}.kup-part")), q(&target));
        // A failed copy leaves no partial file behind.
        let line = format!(
            "mkdir -p {dir} && {{ (cat > {part} && [ \"$(wc -c < {part})\" -eq {size} ] && chmod {} {part} && mv -f {part} {file}) || {{ rm -f {part}; exit 1; }}; }}",
            if executable { "0755" } else { "0644" }
        );
        Ok(self.sudo_wrap(line))
    }

    fn sudo_wrap(&self, line: String) -> String {
        if self.sudo {
            format!(
                "sudo -n sh -c {}",
                shlex::try_quote(&line).map_or_else(|_| line.clone(), |q| q.into_owned())
            )
        } else {
            line
        }
    }

    /// The command lines of the template `name` for `vars`, ready for the remote shell.
    pub fn render(&self, name: &'static str, vars: &Vars<'_>) -> Result<String, RecipeError> {
        let template = self
            .templates()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
            .ok_or(RecipeError::Empty { name })?;
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .ok_or(RecipeError::Unclosed { name })?;
            let key = &rest[open + 1..open + close];
            let value = match key {
                "version" => vars.version.to_string(),
                "version_number" => vars.version.to_string().trim_start_matches('v').to_string(),
                "from_version" => vars.from_version.to_string(),
                "minor" => format!("v{}.{}", vars.version.major, vars.version.minor),
                "image_repository" => vars.image_repository.to_string(),
                "host" => vars.host.to_string(),
                "backup_dir" => self.backup_dir.clone(),
                _ => {
                    return Err(RecipeError::UnknownPlaceholder {
                        name,
                        placeholder: key.into(),
                    });
                }
            };
            // Checked values need no quoting; quoted all the same, unless already plain.
            out.push_str(&shlex::try_quote(&value).map_or(value.clone(), |q| q.into_owned()));
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        Ok(self.sudo_wrap(out))
    }
}

/// An absolute path that goes into commands as it is: letters, digits and `./_-`, no `..`.
fn plain_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "./_-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            version: KubeVersion::new(1, 30, 6),
            from_version: KubeVersion::new(1, 29, 2),
            host: "cp-0",
            image_repository: "registry.local:5000/k8s",
        }
    }

    #[test]
    fn the_defaults_follow_kubeadms_procedure() {
        let c = Commands::default();
        c.validate().unwrap();
        let r = |name| c.render(name, &vars()).unwrap();
        assert_eq!(
            r("install_kubeadm"),
            "([ ! -f /etc/apt/sources.list.d/kubernetes.list ] || sed -i 's#/v[0-9][0-9.]*/deb#/v1.30/deb#' \
             /etc/apt/sources.list.d/kubernetes.list) && apt-get update -q && apt-mark unhold kubeadm && \
             apt-get install -y -q --reinstall --allow-change-held-packages --allow-downgrades kubeadm='1.30.6-*' && \
             apt-mark hold kubeadm"
        );
        assert_eq!(
            r("pull_images"),
            "kubeadm config images pull --kubernetes-version v1.30.6 --image-repository registry.local:5000/k8s"
        );
        assert_eq!(r("upgrade_apply"), "kubeadm upgrade apply v1.30.6 --yes");
        assert_eq!(r("upgrade_node"), "kubeadm upgrade node");
        assert!(r("install_kubelet").contains("kubelet='1.30.6-*' kubectl='1.30.6-*'"));
        // Backups are of the version before, restores of the version to go back to.
        assert_eq!(
            r("backup"),
            "mkdir -p /var/lib/kup/backup/v1.29.2 && (test -e /var/lib/kup/backup/v1.29.2/manifests || (rm -rf /var/lib/kup/backup/v1.29.2/manifests.part && cp -a /etc/kubernetes/manifests /var/lib/kup/backup/v1.29.2/manifests.part && mv /var/lib/kup/backup/v1.29.2/manifests.part /var/lib/kup/backup/v1.29.2/manifests))"
        );
        assert!(r("backup_cluster").contains(
            "snapshot save /var/lib/kup/backup/v1.29.2/etcd.db.part && mv /var/lib/kup/backup/v1.29.2/etcd.db.part /var/lib/kup/backup/v1.29.2/etcd.db"
        ));
        assert!(r("backup_cluster").contains("get --ignore-not-found configmap/kubeadm-config"));
        assert_eq!(
            r("restore"),
            "test -d /var/lib/kup/backup/v1.30.6/manifests && for f in /var/lib/kup/backup/v1.30.6/manifests/*.yaml; do case $(basename \"$f\") in etcd.yaml) ;; *) cp -a \"$f\" /etc/kubernetes/manifests/ || exit 1;; esac; done"
        );
        assert!(
            r("restore_addons").starts_with("test -f /var/lib/kup/backup/v1.30.6/addons.yaml && ")
        );
    }

    #[test]
    fn a_payload_file_is_installed_whole_or_not_at_all() {
        let mut c = Commands::default();
        assert_eq!(
            c.install_file("w-0", "usr/bin/kubelet", 1234).unwrap(),
            "mkdir -p /usr/bin && { (cat > /usr/bin/kubelet.kup-part && [ \"$(wc -c < /usr/bin/kubelet.kup-part)\" -eq 1234 ] && chmod 0755 /usr/bin/kubelet.kup-part && mv -f /usr/bin/kubelet.kup-part /usr/bin/kubelet) || { rm -f /usr/bin/kubelet.kup-part; exit 1; }; }"
        );
        c.payload_root = "/srv/root/{host}/".into();
        c.sudo = true;
        let line = c
            .install_file("w-0", "etc/kubernetes/kubelet.env", 7)
            .unwrap();
        assert!(
            line.starts_with("sudo -n sh -c 'mkdir -p /srv/root/w-0/etc/kubernetes && "),
            "{line}"
        );
        assert!(
            line.contains("chmod 0644 /srv/root/w-0/etc/kubernetes/kubelet.env.kup-part"),
            "{line}"
        );
    }

    /// The command itself, run by a local shell: a short copy (a connection cut off midway)
    /// leaves the old file in place; a whole one replaces it, executable.
    #[test]
    fn a_cut_off_copy_is_never_installed() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = Commands {
            payload_root: format!("{}/{{host}}", dir.path().display()),
            ..Commands::default()
        };
        let file = dir.path().join("w-0/usr/bin/kubelet");
        let send = |bytes: &[u8], size: usize| {
            let line = c.install_file("w-0", "usr/bin/kubelet", size).unwrap();
            let mut sh = std::process::Command::new("sh")
                .args(["-c", &line])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            sh.stdin.take().unwrap().write_all(bytes).unwrap();
            sh.wait().unwrap().success()
        };
        assert!(send(b"old", 3));
        assert!(!send(b"new, cut", 12));
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
        assert!(!file.with_extension("kup-part").exists());
        assert!(send(b"new, whole", 10));
        assert_eq!(std::fs::read(&file).unwrap(), b"new, whole");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn templates_are_checked_and_rendered() {
        let mut c = Commands {
            upgrade_node: "kubeadm upgrade node --certificate-renewal=false # {host}".into(),
            ..Commands::default()
        };
        assert_eq!(
            c.render("upgrade_node", &vars()).unwrap(),
            "kubeadm upgrade node --certificate-renewal=false # cp-0"
        );
        c.sudo = true;
        assert_eq!(
            c.render("upgrade_apply", &vars()).unwrap(),
            "sudo -n sh -c 'kubeadm upgrade apply v1.30.6 --yes'"
        );
        let bad = [
            (
                Commands {
                    pull_images: "crictl pull {image}".into(),
                    ..Commands::default()
                },
                "command template pull_images: unknown placeholder {image} (known: {version}, {version_number}, {minor}, {host}, {from_version}, {backup_dir}, {image_repository})",
            ),
            (
                Commands {
                    upgrade_apply: "kubeadm upgrade apply {version --yes".into(),
                    ..Commands::default()
                },
                "command template upgrade_apply: an unclosed {",
            ),
            (
                Commands {
                    restart_kubelet: "  ".into(),
                    ..Commands::default()
                },
                "command template restart_kubelet is empty",
            ),
            (
                Commands {
                    payload_root: "/srv/{host}/$(id)".into(),
                    ..Commands::default()
                },
                "payload_root \"/srv/{host}/$(id)\" is not an absolute path of letters, digits and ./_- (with {host} at most)",
            ),
            (
                Commands {
                    backup_dir: "backups; rm -rf /".into(),
                    ..Commands::default()
                },
                "backup_dir \"backups; rm -rf /\" is not an absolute path of letters, digits and ./_- (it goes into commands)",
            ),
        ];
        for (c, want) in bad {
            assert_eq!(c.validate().unwrap_err().to_string(), want);
        }
    }
}
