use std::sync::{Arc, Mutex};

use clap::{CommandFactory, Parser};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// The shape `main.rs` gives the client: options flattened beside the subcommand.
#[derive(clap::Parser, Debug)]
struct TestCli {
    #[command(flatten)]
    opts: ClientOpts,
    #[command(subcommand)]
    cmd: ClientCommand,
}

fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
    TestCli::try_parse_from(std::iter::once("kup").chain(args.iter().copied()))
}

#[test]
fn the_cli_definition_is_valid_and_every_command_has_help() {
    TestCli::command().debug_assert();
    let cmd = TestCli::command();
    let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    assert_eq!(
        names,
        [
            "kube-version-list",
            "kube-version-show",
            "kube-upgrade-start",
            "kube-upgrade-show",
            "kube-upgrade-download-images",
            "kube-upgrade-networking",
            "kube-upgrade-abort",
            "kube-host-cordon",
            "kube-host-uncordon",
            "kube-host-upgrade",
            "kube-host-upgrade-list",
            "kube-upgrade-complete",
            "kube-upgrade-delete",
            "kube-upgrade-failed",
            "kube-host-upgrade-failed",
            "health-query-kube-upgrade",
            "host-list",
            "host-show",
            "host-lock",
            "host-unlock",
            "host-swact",
            "alarm-list",
            "event-list",
            "sw-patch",
            "info",
            "ha-status",
            "kube-upgrade-strategy",
            "upgrade",
        ]
    );
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        assert!(
            !about.is_empty() && !about.contains('\n'),
            "{}",
            sub.get_name()
        );
    }
    let sw: Vec<&str> = cmd
        .find_subcommand("sw-patch")
        .unwrap()
        .get_subcommands()
        .map(|s| s.get_name())
        .collect();
    assert_eq!(
        sw,
        [
            "upload",
            "apply",
            "remove",
            "delete",
            "host-install",
            "query",
            "show",
            "query-hosts",
            "keygen",
            "build"
        ],
        "the SPEC's sw-patch commands"
    );
}

#[test]
fn parses_the_spec_forms() {
    let cli = parse(&[
        "kube-upgrade-start",
        "v1.16.2",
        "--force",
        "--alarm-ignore",
        "100.101,200.001",
    ])
    .unwrap();
    assert_eq!(
        cli.cmd,
        ClientCommand::KubeUpgradeStart {
            version: "v1.16.2".into(),
            force: true,
            alarm_ignore: vec!["100.101".into(), "200.001".into()],
        }
    );
    let cli = parse(&[
        "kube-host-upgrade",
        "controller-1",
        "control-plane",
        "--force",
    ])
    .unwrap();
    assert_eq!(
        cli.cmd,
        ClientCommand::KubeHostUpgrade {
            host: "controller-1".into(),
            component: HostComponent::ControlPlane,
            force: true,
        }
    );
    let cli = parse(&["kube-host-upgrade", "worker-0", "kubelet"]).unwrap();
    assert!(matches!(
        cli.cmd,
        ClientCommand::KubeHostUpgrade {
            component: HostComponent::Kubelet,
            force: false,
            ..
        }
    ));
    let cli = parse(&["event-list", "--after", "5"]).unwrap();
    assert_eq!(
        cli.cmd,
        ClientCommand::EventList {
            after: 5,
            limit: 1000,
            long_poll: 0,
            follow: false,
        }
    );
    let cli = parse(&["host-unlock", "worker-0", "--force"]).unwrap();
    assert_eq!(
        cli.cmd,
        ClientCommand::HostUnlock {
            host: "worker-0".into(),
            force: true
        }
    );
}

#[test]
fn global_options_work_after_the_subcommand() {
    let cli = parse(&[
        "host-list",
        "--format",
        "json",
        "--url",
        "http://h:1",
        "--token",
        "t",
        "--wait",
    ])
    .unwrap();
    assert_eq!(cli.opts.format, Format::Json);
    assert_eq!(cli.opts.url, "http://h:1");
    assert_eq!(cli.opts.token.as_deref(), Some("t"));
    assert!(cli.opts.wait);
    let cli = parse(&["--format", "yaml", "alarm-list"]).unwrap();
    assert_eq!(cli.opts.format, Format::Yaml);
}

#[test]
fn usage_errors_are_clap_errors() {
    for args in [
        &["kube-host-upgrade", "controller-1", "etcd"][..],
        &["kube-version-show"],
        &["host-list", "--format", "xml"],
        &["kube-upgrade-abort", "now"],
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
    }
}

#[test]
fn error_lines_are_one_line() {
    let o = Outcome::failed(CliError::Client(ClientError::Api {
        status: 400,
        reason: "first line\nsecond  line \r\nthird\u{a0}line".into(),
    }));
    assert_eq!(
        o.error_line().unwrap(),
        "Error: first line second line third line"
    );
    assert_eq!(o.exit_code(), ExitCode::from(1));
    // A tab is not a space: the name it is part of is shown with it, escaped.
    let o = Outcome::failed(CliError::Client(ClientError::Api {
        status: 404,
        reason: "Host worker-0\t not found".into(),
    }));
    let line = o.error_line().unwrap();
    assert_eq!(line, "Error: Host worker-0\t not found");
    assert_eq!(
        crate::term::safe(&line),
        "Error: Host worker-0\\u0009 not found"
    );
}

/// Every positional argument that names a host, a version or a patch (whatever the command)
/// refuses what no URL path can carry as itself (an empty name, `.`, `..`) as a usage error,
/// before any request; any other text is taken as it is, for the daemon to look up.
#[test]
fn an_empty_name_is_a_usage_error_for_every_command_that_takes_one() {
    fn walk(cmd: &clap::Command, path: Vec<String>, found: &mut Vec<(Vec<String>, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            if sub.has_subcommands() {
                walk(sub, p, found);
            } else {
                found.push((p, sub.clone()));
            }
        }
    }
    let mut commands = Vec::new();
    walk(&TestCli::command(), Vec::new(), &mut commands);
    let mut checked = Vec::new();
    for (path, cmd) in &commands {
        let positionals: Vec<&clap::Arg> = cmd.get_positionals().collect();
        for (i, arg) in positionals.iter().enumerate() {
            let id = arg.get_id().as_str();
            if !["host", "version", "id"].contains(&id) {
                continue;
            }
            let args_with = |value: &str| {
                let mut args: Vec<String> = path.clone();
                for (j, other) in positionals.iter().enumerate() {
                    args.push(if i == j {
                        value.to_string()
                    } else {
                        match other.get_id().as_str() {
                            "component" => "kubelet".into(),
                            other => panic!("{path:?}: no value for <{other}>: teach the test"),
                        }
                    });
                }
                args
            };
            for bad in ["", ".", ".."] {
                let args = args_with(bad);
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let e = parse(&refs).unwrap_err();
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                assert!(e.to_string().contains("cannot"), "{args:?}: {e}");
            }
            for good in ["worker-0", "worker-0\t", " ", "..."] {
                let args = args_with(good);
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                assert!(parse(&refs).is_ok(), "{args:?}");
            }
            checked.push(path.join(" "));
        }
    }
    assert_eq!(
        checked,
        [
            "kube-version-show",
            "kube-upgrade-start",
            "kube-host-cordon",
            "kube-host-uncordon",
            "kube-host-upgrade",
            "kube-host-upgrade-failed",
            "host-show",
            "host-lock",
            "host-unlock",
            "host-swact",
            "sw-patch apply",
            "sw-patch remove",
            "sw-patch delete",
            "sw-patch host-install",
            "sw-patch show",
        ]
    );
    for bad in ["--to=", "--to=.."] {
        let e = parse(&["upgrade", "plan", bad]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad}: {e}");
    }
}

/// The numeric flags accept exactly what the API accepts: the bounds the OpenAPI document
/// declares for the query parameter each one becomes (which the API's conformance test holds
/// the server to). Every integer parameter of the document has its flag.
#[test]
fn numeric_flags_accept_exactly_what_the_api_document_allows() {
    let flags = [
        (&["event-list"][..], "--after", "/v1/events", "after"),
        (&["event-list"][..], "--limit", "/v1/events", "limit"),
        (&["event-list"][..], "--long-poll", "/v1/events", "wait"),
        (
            &["upgrade", "plan"][..],
            "--max-parallel-worker-hosts",
            "/v1/upgrade/plan",
            "max_parallel_worker_hosts",
        ),
        (
            &["upgrade", "plan"][..],
            "--min-free-disk-gib",
            "/v1/upgrade/plan",
            "min_free_disk_gib",
        ),
    ];
    let doc = serde_json::to_value(kup_api::openapi()).unwrap();
    let mut in_document = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["schema"]["type"] == "integer" {
                    in_document.push((path.clone(), p["name"].as_str().unwrap().to_string()));
                }
            }
        }
    }
    let mut covered: Vec<(String, String)> = flags
        .iter()
        .map(|(_, _, path, name)| (path.to_string(), name.to_string()))
        .collect();
    covered.sort();
    in_document.sort();
    assert_eq!(covered, in_document, "every integer parameter has its flag");

    for (command, flag, path, name) in flags {
        let param = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        let schema = &param["schema"];
        let format_bounds = match schema["format"].as_str() {
            Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
            Some("int64") => (i128::from(i64::MIN), i128::from(i64::MAX)),
            other => panic!("{path} ?{name}: format {other:?}"),
        };
        let bound = |key: &str, default: i128| {
            schema.get(key).map_or(default, |b| {
                b.as_i64()
                    .map(i128::from)
                    .or(b.as_u64().map(i128::from))
                    .unwrap()
            })
        };
        let (lo, hi) = (
            bound("minimum", format_bounds.0),
            bound("maximum", format_bounds.1),
        );
        let try_value = |value: i128| {
            let mut args: Vec<String> = command.iter().map(|c| c.to_string()).collect();
            args.push(format!("{flag}={value}"));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            parse(&refs).map(|_| ()).map_err(|e| e.exit_code())
        };
        assert_eq!(try_value(lo), Ok(()), "{flag}={lo}");
        assert_eq!(try_value(hi), Ok(()), "{flag}={hi}");
        assert_eq!(try_value(lo - 1), Err(2), "{flag}={}", lo - 1);
        assert_eq!(try_value(hi + 1), Err(2), "{flag}={}", hi + 1);
    }
}

/// `sw-patch keygen` and `sw-patch build` print a sentence in a table's stead, and under
/// `--format json` or `yaml` an object: the files written, the key id and the patch id.
#[test]
fn keygen_and_build_print_objects_in_json_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let local = |args: &[&str]| {
        let cli = parse(args).unwrap();
        let ClientCommand::SwPatch(cmd) = cli.cmd else {
            panic!("{args:?}")
        };
        local_sw_patch(&cmd, cli.opts.format).unwrap()
    };
    let out = local(&["sw-patch", "keygen", "--out", &at("k"), "--format", "json"]);
    let keygen: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let key_id = keygen["key_id"].as_str().unwrap().to_string();
    assert_eq!(key_id.len(), 16);
    assert_eq!(
        keygen,
        json!({"secret_key_file": at("k.secret"), "public_key_file": at("k.pub"), "key_id": key_id})
    );
    let out = local(&["sw-patch", "keygen", "--out", &at("y"), "--format", "yaml"]);
    let yaml: Value = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(yaml["public_key_file"], at("y.pub"), "{out}");
    let out = local(&["sw-patch", "keygen", "--out", &at("t")]);
    assert!(
        out.starts_with(&format!(
            "wrote {} (keep it secret) and {}",
            at("t.secret"),
            at("t.pub")
        )),
        "{out}"
    );

    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("files/bin")).unwrap();
    std::fs::write(
        src.join("patch.json"),
        r#"{"id": "T.1", "summary": "a kubelet", "kind": "kubelet", "delivers": "v1.16.2"}"#,
    )
    .unwrap();
    std::fs::write(src.join("files/bin/kubelet"), b"binary").unwrap();
    let build = |format: &str, out: &str| {
        local(&[
            "sw-patch",
            "build",
            &src.display().to_string(),
            "--key",
            &at("k.secret"),
            "--out",
            &at(out),
            "--format",
            format,
        ])
    };
    let out = build("json", "T.1.patch");
    let built: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let size = std::fs::metadata(at("T.1.patch")).unwrap().len();
    assert_eq!(
        built,
        json!({"bundle_file": at("T.1.patch"), "bytes": size, "patch_id": "T.1", "key_id": key_id})
    );
    let out = build("yaml", "T.1.y.patch");
    let yaml: Value = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(yaml["patch_id"], "T.1", "{out}");
    let out = build("table", "T.1.t.patch");
    assert_eq!(out, format!("wrote {} ({size} bytes)\n", at("T.1.t.patch")));
}

#[test]
fn an_explicit_token_wins_and_is_trimmed() {
    let opts = ClientOpts {
        url: DEFAULT_URL.into(),
        token: Some(" abc \n".into()),
        ca_file: None,
        format: Format::Table,
        wait: false,
    };
    assert_eq!(opts.resolve_token().unwrap(), "abc");
}

// ---- against a fake daemon ---------------------------------------------------------------

/// A request as the fake daemon saw it: method, path (with query), JSON body.
type Seen = (String, String, Value);
type Handler = dyn Fn(&str, &str, &Value) -> (u16, Value) + Send + Sync;

/// A one-request-per-connection HTTP server answering with `reply(method, path, body)`.
async fn fake_daemon(reply: Box<Handler>) -> (Runner, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let reply: Arc<Handler> = Arc::from(reply);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (log, reply) = (log.clone(), reply.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let first = String::from_utf8_lossy(&buf[..end])
                    .lines()
                    .next()
                    .unwrap()
                    .to_string();
                let mut parts = first.split(' ');
                let (method, path) = (
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                );
                let body: Value =
                    serde_json::from_slice(&buf[end..end + len]).unwrap_or(Value::Null);
                let (status, answer) = reply(&method, &path, &body);
                log.lock().unwrap().push((method, path, body));
                let text = if status == 204 {
                    String::new()
                } else {
                    answer.to_string()
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
                sock.shutdown().await.ok();
            });
        }
    });
    let mut runner = Runner::new(Client::new(&url, "t").unwrap(), Format::Table, false);
    runner.poll = Duration::from_millis(1);
    runner.progress = false;
    (runner, seen)
}

/// A server that answers every request with `status`, `content_type` and `body`, as a proxy
/// in front of nothing might.
async fn raw_server(status: u16, content_type: &'static str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                sock.shutdown().await.ok();
            });
        }
    });
    url
}

/// `--url` at something that is not kup: its 2 MB HTML error page becomes one short `Error:`
/// line that says what answered (status, content type, size) and quotes 200 characters.
#[tokio::test]
async fn an_html_error_page_is_one_short_error_line() {
    let page = format!(
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>{}</body></html>\n",
        "<p>upstream unavailable</p>\n".repeat(72_000)
    );
    let size = page.len();
    let url = raw_server(502, "text/html", page).await;
    let cli = parse(&["host-list", "--url", &url, "--token", "t"]).unwrap();
    let runner = Runner::from_opts(&cli.opts).unwrap();
    let out = runner.execute(&cli.cmd).await;
    let line = out.error_line().unwrap();
    assert!(
        line.starts_with(&format!(
            "Error: the server answered HTTP 502 Bad Gateway (text/html, {size} bytes), not \
             kup's error body: <html> <head><title>502 Bad Gateway</title></head> <body><p>"
        )),
        "{line}"
    );
    assert!(line.chars().count() < 300, "{} bytes", line.len());
}

/// Credentials in `--url` are never printed, whichever message names the URL.
#[tokio::test]
async fn credentials_in_the_url_are_not_printed() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://admin:hunter2@127.0.0.1:{port}");
    let cli = parse(&["host-list", "--url", &url, "--token", "t"]).unwrap();
    let out = Runner::from_opts(&cli.opts)
        .unwrap()
        .execute(&cli.cmd)
        .await;
    let line = out.error_line().unwrap();
    assert!(
        line.starts_with(&format!(
            "Error: cannot reach kup at http://***@127.0.0.1:{port}: "
        )),
        "{line}"
    );
    for bad in ["admin:hunter2@127.0.0.1:99999", "ftp://admin:hunter2@h/"] {
        let cli = parse(&["host-list", "--url", bad, "--token", "t"]).unwrap();
        let line = Outcome::failed(Runner::from_opts(&cli.opts).err().unwrap())
            .error_line()
            .unwrap();
        assert!(!line.contains("hunter2") && line.contains("***@"), "{line}");
    }
}

/// A name is sent as typed, tab and newline included, and the daemon's refusal quotes it as
/// typed: `host-lock $'worker-0\t'` does not lock worker-0, and a newline in a name cannot
/// start a line of its own.
#[tokio::test]
async fn names_are_sent_as_typed_and_refusals_show_them() {
    let (runner, seen) = fake_daemon(Box::new(|_, path, _| {
        let name = match path {
            "/v1/ihosts/worker-0%09" => "worker-0\t",
            "/v1/ihosts/worker-9%0AError%3A%20all%20good" => "worker-9\nError: all good",
            _ => "(another)",
        };
        (404, refusal(&format!("Host {name} not found")))
    }))
    .await;
    let run = |name: &'static str| {
        let cli = parse(&["host-lock", name]).unwrap();
        let runner = &runner;
        async move { runner.execute(&cli.cmd).await.error_line().unwrap() }
    };
    let line = run("worker-0\t").await;
    assert_eq!(
        crate::term::safe(&line),
        "Error: Host worker-0\\u0009 not found"
    );
    let line = run("worker-9\nError: all good").await;
    assert_eq!(line, "Error: Host worker-9 Error: all good not found");
    let targets: Vec<String> = seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
    assert_eq!(
        targets,
        [
            "/v1/ihosts/worker-0%09",
            "/v1/ihosts/worker-9%0AError%3A%20all%20good"
        ]
    );
}

fn refusal(reason: &str) -> Value {
    serde_json::to_value(kup_types::ErrorBody::new("Client", reason)).unwrap()
}

fn upgrade(state: &str) -> Value {
    json!({
        "id": 1, "uuid": "b5f7dada-2537-4416-9d2c-f9ca9fcd0e22",
        "from_version": "v1.16.1", "to_version": "v1.16.2", "state": state,
        "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null
    })
}

fn host(administrative: &str, task: Option<&str>) -> Value {
    json!({
        "id": 2, "uuid": "u-2", "hostname": "controller-1", "personality": "controller",
        "subfunctions": "controller", "administrative": administrative, "operational": "enabled",
        "availability": "available", "task": task, "active_controller": false,
        "capabilities": {}, "roles": [], "peers": null,
        "install_state": null, "install_state_info": null,
        "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null
    })
}

fn host_upgrade_row(status: Option<&str>) -> Value {
    json!({"kube_host_upgrades": [{
        "id": 9, "uuid": "hu", "host_id": 2, "hostname": "controller-1", "personality": "controller",
        "target_version": "v1.16.2", "status": status,
        "control_plane_version": "v1.16.1", "kubelet_version": "v1.16.1",
        "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null
    }]})
}

/// Answers `GET /v1/kube_upgrade` with `states` in turn, the last one forever.
fn polled_states(states: &'static [&'static str]) -> impl Fn() -> &'static str + Send + Sync {
    let n = Mutex::new(0usize);
    move || {
        let mut n = n.lock().unwrap();
        let s = states[(*n).min(states.len() - 1)];
        *n += 1;
        s
    }
}

#[tokio::test]
async fn kube_upgrade_failed_maps_in_flight_states_only() {
    let next = polled_states(&["upgrading-networking", "upgraded-networking"]);
    let (runner, seen) = fake_daemon(Box::new(move |m, _, body| match m {
        "GET" => (200, json!({"kube_upgrades": [upgrade(next())]})),
        _ => (200, upgrade(body[0]["value"].as_str().unwrap())),
    }))
    .await;
    let out = runner.execute(&ClientCommand::KubeUpgradeFailed).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.stdout
            .contains("| state        | upgrading-networking-failed          |"),
        "{}",
        out.stdout
    );
    assert_eq!(
        seen.lock().unwrap()[1].2,
        json!([{"op": "replace", "path": "/state", "value": "upgrading-networking-failed"}])
    );

    let out = runner.execute(&ClientCommand::KubeUpgradeFailed).await;
    assert_eq!(
        out.error_line().unwrap(),
        "Error: Kubernetes upgrade is in upgraded-networking state, cannot be set to failed"
    );
    assert_eq!(out.stdout, "");
    assert_eq!(seen.lock().unwrap().len(), 3, "no PATCH after a refusal");
}

#[tokio::test]
async fn refusals_print_the_servers_reason() {
    let (runner, _) = fake_daemon(Box::new(|m, path, _| match (m, path) {
        ("GET", "/v1/kube_upgrade") => (200, json!({"kube_upgrades": []})),
        _ => (400, refusal("Kubernetes upgrade is not in progress")),
    }))
    .await;
    let out = runner.execute(&ClientCommand::KubeUpgradeShow).await;
    assert_eq!(out.stdout, "A kubernetes upgrade is not in progress\n");
    assert!(out.error.is_none());
    let out = runner.execute(&ClientCommand::KubeUpgradeComplete).await;
    assert_eq!(
        out.error_line().unwrap(),
        "Error: Kubernetes upgrade is not in progress"
    );
    let out = runner.execute(&ClientCommand::KubeUpgradeFailed).await;
    assert_eq!(
        out.error_line().unwrap(),
        "Error: A kubernetes upgrade is not in progress"
    );
}

#[tokio::test]
async fn wait_polls_a_cluster_step_until_it_settles() {
    let next = polled_states(&[
        "downloading-images",
        "downloading-images",
        "downloaded-images",
    ]);
    let (mut runner, seen) = fake_daemon(Box::new(move |m, _, _| match m {
        "PATCH" => (200, upgrade("downloading-images")),
        _ => (200, json!({"kube_upgrades": [upgrade(next())]})),
    }))
    .await;
    let out = runner
        .execute(&ClientCommand::KubeUpgradeDownloadImages)
        .await;
    assert!(
        out.stdout
            .contains("| state        | downloading-images                   |")
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "no polling without --wait");

    runner.wait = true;
    let out = runner
        .execute(&ClientCommand::KubeUpgradeDownloadImages)
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.stdout
            .contains("| state        | downloaded-images                    |"),
        "{}",
        out.stdout
    );
    assert_eq!(seen.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn wait_reports_a_failed_cluster_step_after_the_table() {
    let next = polled_states(&["upgrading-networking", "upgrading-networking-failed"]);
    let (mut runner, _) = fake_daemon(Box::new(move |m, _, _| match m {
        "PATCH" => (200, upgrade("upgrading-networking")),
        _ => (200, json!({"kube_upgrades": [upgrade(next())]})),
    }))
    .await;
    runner.wait = true;
    let out = runner.execute(&ClientCommand::KubeUpgradeNetworking).await;
    assert!(
        out.stdout
            .contains("| state        | upgrading-networking-failed          |"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.error_line().unwrap(),
        "Error: kube-upgrade-networking failed: state upgrading-networking-failed"
    );
}

#[tokio::test]
async fn kube_host_upgrade_shows_the_joined_row_and_waits_for_host_and_cluster() {
    let statuses = Arc::new(Mutex::new(0usize));
    let (mut runner, seen) = fake_daemon(Box::new(move |m, path, _| match (m, path) {
        ("POST", "/v1/ihosts/controller-1/kube_upgrade_control_plane") => {
            (200, host("unlocked", None))
        }
        ("GET", "/v1/kube_host_upgrades") => {
            let mut n = statuses.lock().unwrap();
            *n += 1;
            let status = if *n <= 2 {
                Some("upgrading-control-plane")
            } else {
                None
            };
            (200, host_upgrade_row(status))
        }
        ("GET", "/v1/kube_upgrade") => (
            200,
            json!({"kube_upgrades": [upgrade("upgraded-first-master")]}),
        ),
        _ => (404, refusal("no")),
    }))
    .await;
    let cmd = ClientCommand::KubeHostUpgrade {
        host: "controller-1".into(),
        component: HostComponent::ControlPlane,
        force: false,
    };
    let out = runner.execute(&cmd).await;
    assert_eq!(
        out.stdout,
        "+-----------------------+-------------------------+\n\
         | Property              | Value                   |\n\
         +-----------------------+-------------------------+\n\
         | control_plane_version | v1.16.1                 |\n\
         | hostname              | controller-1            |\n\
         | id                    | 2                       |\n\
         | kubelet_version       | v1.16.1                 |\n\
         | personality           | controller              |\n\
         | status                | upgrading-control-plane |\n\
         | target_version        | v1.16.2                 |\n\
         +-----------------------+-------------------------+\n"
    );
    assert_eq!(seen.lock().unwrap()[0].2, json!({"force": false}));

    runner.wait = true;
    let out = runner.execute(&cmd).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.stdout.contains("| status                | None "),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn host_lock_waits_for_the_task_and_checks_the_effect() {
    let polls = Arc::new(Mutex::new(0usize));
    let (mut runner, seen) = fake_daemon(Box::new(move |m, path, _| match (m, path) {
        ("PATCH", "/v1/ihosts/controller-1") => (200, host("unlocked", Some("Locking"))),
        ("GET", "/v1/ihosts/2") => {
            let mut n = polls.lock().unwrap();
            *n += 1;
            match *n {
                1 => (200, host("unlocked", Some("Locking"))),
                2 => (200, host("locked", None)),
                // The second lock is undone by the daemon.
                3 => (200, host("unlocked", None)),
                _ => (404, refusal("no")),
            }
        }
        _ => (404, refusal("no")),
    }))
    .await;
    runner.wait = true;
    let lock = ClientCommand::HostLock {
        host: "controller-1".into(),
        force: true,
    };
    let out = runner.execute(&lock).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.stdout.contains("| administrative     | locked "),
        "{}",
        out.stdout
    );
    // (With --wait, the end of the event log is asked for first.)
    let patch = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.0 == "PATCH")
        .cloned();
    assert_eq!(
        patch.unwrap().2,
        json!([{"op": "replace", "path": "/action", "value": "force-lock"}])
    );

    let out = runner.execute(&lock).await;
    assert_eq!(
        out.error_line().unwrap(),
        "Error: host-lock failed: controller-1 is unlocked"
    );
    assert!(out.stdout.contains("| administrative     | unlocked "));
}

#[tokio::test]
async fn structured_formats_and_plain_messages() {
    let (mut runner, _) = fake_daemon(Box::new(|m, path, _| match (m, path) {
        ("DELETE", _) => (204, Value::Null),
        ("GET", "/v1/health/kube-upgrade") => (
            200,
            json!("System Health:\nAll hosts are provisioned: [OK]"),
        ),
        ("GET", "/v1/kube_versions") => (
            200,
            json!({"kube_versions": [
            {"version": "v1.16.1", "target": true, "state": "active"}]}),
        ),
        _ => (404, refusal("no")),
    }))
    .await;
    let out = runner.execute(&ClientCommand::KubeUpgradeDelete).await;
    assert_eq!(out.stdout, "Kubernetes upgrade deleted\n");
    let out = runner
        .execute(&ClientCommand::HealthQueryKubeUpgrade { relaxed: false })
        .await;
    assert_eq!(
        out.stdout,
        "System Health:\nAll hosts are provisioned: [OK]\n"
    );
    runner.format = Format::Json;
    let out = runner.execute(&ClientCommand::KubeVersionList).await;
    let back: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        back,
        json!([{"version": "v1.16.1", "target": true, "state": "active"}])
    );
}
