//! The API over real HTTP on loopback: every refusal, bad input, races, auth, the OpenAPI
//! document (committed, and every operation answering as the served one says), every
//! rejection as the JSON error body, integer parameters accepted exactly within their declared
//! bounds, the cap on concurrent uploads and the deadline of an upload's body, names sent
//! by the client arriving exactly as given, and a failing store answered without its words.

#[path = "../../kup-engine/tests/common/mod.rs"]
mod common;
#[path = "support/schema.rs"]
mod schema;

use std::sync::Arc;

use common::refusal_cases::cases;
use common::*;
use kup_api::{Role, Tokens};
use kup_core::Command;
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";

/// Serves the harness's engine on a free loopback port; returns the base URL.
async fn serve(h: &Harness) -> String {
    let tokens = Tokens::new([(Role::Admin, ADMIN.into()), (Role::Reader, READER.into())]);
    let app = kup_api::router(Arc::clone(&h.engine), tokens);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct Reply {
    status: u16,
    content_type: String,
    /// The body as JSON; a body that is not JSON is a `Value::String` of its text, an empty
    /// one `Null`.
    body: Value,
    /// Whether the body was empty or parsed as JSON.
    json: bool,
}

impl Reply {
    /// The reason inside sysinv's error body.
    fn reason(&self) -> String {
        let inner = self.body["error_message"]
            .as_str()
            .unwrap_or_else(|| panic!("{:?}", self.body));
        let inner: Value = serde_json::from_str(inner).unwrap();
        assert_eq!(
            inner["faultcode"],
            if self.status < 500 {
                "Client"
            } else {
                "Server"
            }
        );
        assert!(inner["debuginfo"].is_null());
        inner["faultstring"].as_str().unwrap().to_string()
    }
}

async fn send(
    base: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    send_raw(base, token, method, path, body.map(|b| b.to_string()), true).await
}

async fn send_raw(
    base: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<String>,
    json_type: bool,
) -> Reply {
    let body = body.map(|b| {
        let content_type = if json_type { "application/json" } else { "" };
        (content_type, b.into_bytes())
    });
    send_bytes(base, token, method, path, body).await
}

/// Sends a body of any content type (none when the type is empty).
async fn send_bytes(
    base: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    if let Some((content_type, b)) = body {
        if !content_type.is_empty() {
            req = req.header("Content-Type", content_type);
        }
        req = req.body(b);
    }
    reply(req.send().await.unwrap()).await
}

async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let (body, json) = if text.is_empty() {
        (Value::Null, true)
    } else {
        match serde_json::from_str(&text) {
            Ok(v) => (v, true),
            Err(_) => (Value::String(text), false),
        }
    };
    Reply {
        status,
        content_type,
        body,
        json,
    }
}

/// The HTTP request a command is.
fn request(cmd: &Command) -> (Method, String, Option<Value>) {
    let state = |s: &str| Some(json!([{"op": "replace", "path": "/state", "value": s}]));
    let action = |s: &str| Some(json!([{"op": "replace", "path": "/action", "value": s}]));
    match cmd {
        Command::Start {
            to_version,
            force,
            alarm_ignore,
        } => (
            Method::POST,
            "/v1/kube_upgrade".into(),
            Some(
                json!({"to_version": to_version, "force": force, "alarm_ignore_list": alarm_ignore}),
            ),
        ),
        Command::DownloadImages => (
            Method::PATCH,
            "/v1/kube_upgrade".into(),
            state("downloading-images"),
        ),
        Command::UpgradeNetworking => (
            Method::PATCH,
            "/v1/kube_upgrade".into(),
            state("upgrading-networking"),
        ),
        Command::Complete => (
            Method::PATCH,
            "/v1/kube_upgrade".into(),
            state("upgrade-complete"),
        ),
        Command::MarkFailed(s) => (Method::PATCH, "/v1/kube_upgrade".into(), state(s.as_str())),
        // As StarlingX's client sends it: the hostname, then the state.
        Command::Cordon { host } | Command::Uncordon { host } => (
            Method::PATCH,
            "/v1/kube_upgrade".into(),
            Some(json!([
                {"op": "replace", "path": "/hostname", "value": host},
                {"op": "replace", "path": "/state", "value": if matches!(cmd, Command::Cordon { .. }) { "cordon-started" } else { "uncordon-started" }},
            ])),
        ),
        Command::Delete => (Method::DELETE, "/v1/kube_upgrade".into(), None),
        Command::ControlPlane { host, force } => (
            Method::POST,
            format!("/v1/ihosts/{host}/kube_upgrade_control_plane"),
            Some(json!({"force": force})),
        ),
        Command::Kubelet { host, force } => (
            Method::POST,
            format!("/v1/ihosts/{host}/kube_upgrade_kubelet"),
            Some(json!({"force": force})),
        ),
        Command::Lock { host, force } => (
            Method::PATCH,
            format!("/v1/ihosts/{host}"),
            action(if *force { "force-lock" } else { "lock" }),
        ),
        Command::Unlock { host, force } => (
            Method::PATCH,
            format!("/v1/ihosts/{host}"),
            action(if *force { "force-unlock" } else { "unlock" }),
        ),
        Command::Swact { host, force } => (
            Method::PATCH,
            format!("/v1/ihosts/{host}"),
            action(if *force { "force-swact" } else { "swact" }),
        ),
        Command::PatchApply { id } => (Method::POST, format!("/v1/patches/{id}/apply"), None),
        Command::PatchRemove { id } => (Method::POST, format!("/v1/patches/{id}/remove"), None),
        Command::PatchDelete { id } => (Method::DELETE, format!("/v1/patches/{id}"), None),
        Command::PatchHostInstall { host } => (
            Method::POST,
            format!("/v1/ihosts/{host}/patch_install"),
            None,
        ),
        Command::FailHostStep { host } => (
            Method::PATCH,
            format!("/v1/kube_host_upgrades/{host}"),
            Some(json!([{"op": "replace", "path": "/status", "value": "failed"}])),
        ),
        Command::Strategy(sc) => {
            use kup_core::strategy::StrategyCommand as C;
            let path = "/v1/kube_upgrade_strategy";
            let action = |a: &str| Some(json!({ "action": a }));
            match sc {
                C::Create { req, .. } => (Method::POST, path.into(), Some(json!(req))),
                C::Apply => (Method::POST, format!("{path}/actions"), action("apply-all")),
                C::Abort { rollback } => (
                    Method::POST,
                    format!("{path}/actions"),
                    Some(json!({ "action": "abort", "rollback": rollback })),
                ),
                C::Delete => (Method::DELETE, path.into(), None),
                C::Progress(_) => panic!("the runner's progress is not an API request"),
            }
        }
        Command::PatchUpload(_) => {
            panic!("uploads carry a bundle; they are tested with real bundles")
        }
        Command::Abort => (
            Method::PATCH,
            "/v1/kube_upgrade".into(),
            state("upgrade-aborting"),
        ),
        Command::Rollback(_) => panic!("the way back's steps are not API requests"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_400_or_404_with_its_reason_and_changes_nothing() {
    for case in cases() {
        let h = Harness::new((case.cluster)()).await;
        h.prepare(&case).await;
        let base = serve(&h).await;
        let before = (h.stored().await, h.events().await.len());
        let (method, path, body) = request(&case.command);
        let reply = send(&base, Some(ADMIN), method, &path, body).await;
        let expected_status = if case.says.contains("not found") {
            404
        } else {
            400
        };
        assert_eq!(
            reply.status, expected_status,
            "{}: {:?}",
            case.name, reply.body
        );
        assert!(
            reply.content_type.starts_with("application/json"),
            "{}",
            case.name
        );
        let reason = reply.reason();
        assert!(reason.contains(case.says), "{}: {reason}", case.name);
        assert_eq!(
            (h.stored().await, h.events().await.len()),
            before,
            "{}: state changed",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_are_404_and_bad_input_is_400() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let get = |p: &'static str| {
        let base = base.clone();
        async move { send(&base, Some(ADMIN), Method::GET, p, None).await }
    };
    for (path, status, says) in [
        (
            "/v1/kube_versions/v1.99.0",
            404,
            "Kubernetes version v1.99.0 not found",
        ),
        (
            "/v1/kube_versions/v1.42.2.unknown",
            400,
            "invalid Kubernetes version",
        ),
        ("/v1/ihosts/worker-9", 404, "Host worker-9 not found"),
        ("/v1/ihosts/99", 404, "Host 99 not found"),
        ("/v1/kube_host_upgrades/99", 404, "not found"),
        ("/v1/kube_upgrade/not-a-uuid", 404, "not found"),
        ("/v1/no_such_thing", 404, "No such resource"),
        ("/v1/events?after=abc", 400, "Invalid query"),
        // Numbers of the right type but out of range are refused, never taken as another.
        (
            "/v1/upgrade/plan?max_parallel_worker_hosts=0",
            400,
            "Invalid query: max_parallel_worker_hosts must be at least 1, got 0",
        ),
        (
            "/v1/events?limit=0",
            400,
            "Invalid query: limit must be at least 1, got 0",
        ),
        (
            "/v1/events?after=-1",
            400,
            "Invalid query: after must be 0 or more, got -1",
        ),
    ] {
        let r = get(path).await;
        assert_eq!(r.status, status, "{path}: {:?}", r.body);
        assert!(r.reason().contains(says), "{path}: {}", r.reason());
        assert!(r.content_type.starts_with("application/json"), "{path}");
    }
    let post = |path: &'static str, body: &'static str, typed: bool| {
        let base = base.clone();
        async move {
            send_raw(
                &base,
                Some(ADMIN),
                Method::POST,
                path,
                Some(body.into()),
                typed,
            )
            .await
        }
    };
    for (path, body, typed, says) in [
        ("/v1/kube_upgrade", "{", true, "Malformed JSON"),
        ("/v1/kube_upgrade", "[1, 2]", true, "Invalid request"),
        (
            "/v1/kube_upgrade",
            r#"{"to_version": 5}"#,
            true,
            "Invalid request",
        ),
        ("/v1/kube_upgrade", r#"{"force": true}"#, true, "to_version"),
        (
            "/v1/kube_upgrade",
            r#"{"to_version": "v1.16.2", "force": "yes"}"#,
            true,
            "Invalid request",
        ),
        (
            "/v1/kube_upgrade",
            r#"{"to_version": "v1.16.2"}"#,
            false,
            "Content-Type",
        ),
        (
            "/v1/ihosts/controller-1/kube_upgrade_kubelet",
            "nope",
            true,
            "Malformed JSON",
        ),
        (
            "/v1/ihosts/controller-1/kube_upgrade_control_plane",
            r#"{"force": 1}"#,
            true,
            "Invalid request",
        ),
    ] {
        let r = post(path, body, typed).await;
        assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
        assert!(r.reason().contains(says), "{path} {body}: {}", r.reason());
    }
    let patch = |path: &'static str, body: Value| {
        let base = base.clone();
        async move { send(&base, Some(ADMIN), Method::PATCH, path, Some(body)).await }
    };
    for (path, body, says) in [
        (
            "/v1/kube_upgrade",
            json!({"path": "/state"}),
            "Invalid request",
        ),
        (
            "/v1/kube_upgrade",
            json!([{"op": "replace", "path": "/uuid", "value": "x"}]),
            "internal attribute",
        ),
        (
            "/v1/kube_upgrade",
            json!([{"op": "replace", "path": "/state", "value": "bogus"}]),
            "Invalid state bogus supplied",
        ),
        (
            "/v1/kube_upgrade",
            json!([{"op": "replace", "path": "/state", "value": 3}]),
            "must be a string",
        ),
        (
            "/v1/kube_upgrade",
            json!([{"op": "move", "path": "/state", "value": "x"}]),
            "Invalid patch operation",
        ),
        (
            "/v1/kube_upgrade",
            json!([{"op": "replace", "path": "state", "value": "x"}]),
            "Invalid patch path",
        ),
        ("/v1/kube_upgrade", json!([]), "'/state' is mandatory"),
        (
            "/v1/ihosts/worker-0",
            json!([{"op": "replace", "path": "/action", "value": "reboot"}]),
            "Invalid action",
        ),
        (
            "/v1/ihosts/worker-0",
            json!([{"op": "replace", "path": "/hostname", "value": "x"}]),
            "only '/action'",
        ),
    ] {
        let r = patch(path, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.reason().contains(says), "{body}: {}", r.reason());
    }
    let r = send(&base, Some(ADMIN), Method::PUT, "/v1/kube_upgrade", None).await;
    assert_eq!(r.status, 405);
    assert!(r.reason().contains("Method not allowed"));
    assert_eq!(
        h.state().await,
        "none",
        "nothing was started by any of that"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_starts_give_one_200() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                send(
                    &base,
                    Some(ADMIN),
                    Method::POST,
                    "/v1/kube_upgrade",
                    Some(json!({"to_version": "v1.16.2"})),
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 400 {
            assert_eq!(r.reason(), "A kubernetes upgrade is already in progress");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        63,
        "{statuses:?}"
    );
}

/// The routes that answer without a token, each with the reason. Any other operation of the
/// document needs one: a route added without the token check fails
/// `auth_is_enforced_on_every_route_in_the_openapi_document` until it is listed here.
const PUBLIC: &[(&str, &str, &str)] = &[
    (
        "get",
        "/healthz",
        "liveness and readiness probes carry no token; it says only ok or unavailable, and why",
    ),
    (
        "get",
        "/metrics",
        "Prometheus scrapes carry no token; it gives counts and states, no names or text",
    ),
];

/// A plausible value for each path parameter of the document.
const PATH_PARAMS: &[(&str, &str)] = &[
    ("{version}", "v1.16.2"),
    ("{uuid}", "00000000-0000-0000-0000-000000000000"),
    ("{host}", "worker-0"),
    ("{id}", "1"),
];

/// Every operation of the OpenAPI document the daemon serves, path parameters filled in: 401
/// without a token, with a wrong one (in either header), 403 for a reader token on anything
/// but GET or HEAD, never 401/403 for a reader that reads; a method the document does not
/// name on one of its paths is a 405 (no handler hides behind it). Only the routes of
/// `PUBLIC` answer without a token, and the document says so for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_enforced_on_every_route_in_the_openapi_document() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let served = send(&base, Some(READER), Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(served.status, 200);
    let doc = served.body;
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, why) in PUBLIC {
        assert!(
            paths
                .get(*path)
                .is_some_and(|item| item.get(*method).is_some()),
            "{method} {path} is listed as public ({why}) but is not in the document"
        );
    }
    let mut checked = 0;
    for (path, item) in paths {
        let mut concrete = path.clone();
        for (param, value) in PATH_PARAMS {
            concrete = concrete.replace(param, value);
        }
        assert!(
            !concrete.contains('{'),
            "{path}: add a value for its parameter to PATH_PARAMS"
        );
        let documented: Vec<Method> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase().parse().unwrap())
            .collect();
        for m in &documented {
            let method = m.as_str().to_lowercase();
            let op = &item[&method];
            let body = (*m != Method::GET && *m != Method::DELETE).then(|| json!({}));
            if let Some((_, _, why)) = PUBLIC
                .iter()
                .find(|(pm, pp, _)| *pm == method && pp == path)
            {
                assert_eq!(op["security"], json!([{}]), "{method} {path}: {why}");
                let r = send(&base, None, m.clone(), &concrete, body.clone()).await;
                assert!(
                    ![401, 403].contains(&r.status),
                    "{method} {path} is public ({why}) but answered {}",
                    r.status
                );
                continue;
            }
            assert!(
                op.get("security").is_none() || op["security"] != json!([{}]),
                "{method} {path} is declared public but is not in PUBLIC"
            );
            assert!(
                op["responses"].get("401").is_some(),
                "{method} {path} does not declare its 401"
            );
            for token in [None, Some("wrong-token-0123456789")] {
                let r = send(&base, token, m.clone(), &concrete, body.clone()).await;
                assert_eq!(r.status, 401, "{method} {path} with {token:?}");
                assert!(r.reason().contains("Authentication required"));
            }
            let res = reqwest::Client::new()
                .request(m.clone(), format!("{base}{concrete}"))
                .header("Authorization", "Bearer wrong-token-0123456789")
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                401,
                "{method} {path} with a wrong bearer token"
            );
            let r = send(&base, Some(READER), m.clone(), &concrete, body.clone()).await;
            if *m == Method::GET || *m == Method::HEAD {
                assert!(
                    ![401, 403].contains(&r.status),
                    "reader {method} {path}: {}",
                    r.status
                );
            } else {
                assert_eq!(r.status, 403, "reader {method} {path}");
                assert!(r.reason().contains("admin token"));
                assert!(
                    op["responses"].get("403").is_some(),
                    "{method} {path} does not declare its 403"
                );
            }
            checked += 1;
        }
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if documented.contains(&m) {
                continue;
            }
            let r = send(&base, None, m.clone(), &concrete, None).await;
            assert_eq!(r.status, 405, "{m} {path} is not in the document");
        }
    }
    assert!(checked >= 30, "{checked} operations");
    assert_eq!(
        h.events().await.len(),
        0,
        "no request without an admin token changed anything"
    );
    // A valid bearer token works too.
    let res = reqwest::Client::new()
        .get(format!("{base}/v1/kube_versions"))
        .header("Authorization", format!("Bearer {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// A failing store is a 500 whose reason says only that the store failed, with an id to find
/// the detail in the daemon's log: never the database's own words (SQL, table names, SQLite's
/// messages). `/healthz`, which anyone may ask, says no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_error_is_a_500_without_the_database_text() {
    use sqlx::Connection;
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    // Another connection takes away the tables that reads of the log, commits and the health
    // check's probe write need: every one of them now fails inside SQLite.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.db.display()))
        .await
        .unwrap();
    sqlx::raw_sql("DROP TABLE events; DROP TABLE meta;")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let requests = [
        (READER, Method::GET, "/v1/events", None),
        (
            ADMIN,
            Method::POST,
            "/v1/kube_upgrade",
            Some(json!({"to_version": "v1.16.2"})),
        ),
    ];
    let mut ids = Vec::new();
    for (token, method, path, body) in requests {
        let r = send(&base, Some(token), method.clone(), path, body).await;
        assert_eq!(r.status, 500, "{method} {path}: {:?}", r.body);
        let reason = r.reason();
        let id = reason
            .strip_prefix("Internal error: the store failed (error id ")
            .and_then(|rest| rest.strip_suffix("; the daemon's log has the details)"))
            .unwrap_or_else(|| panic!("{method} {path}: {reason}"));
        assert!(
            id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{reason}"
        );
        ids.push(id.to_string());
        let body = r.body.to_string().to_lowercase();
        for word in [
            "sql", "table", "database", "no such", "events", "meta", "returned",
        ] {
            assert!(
                !body.contains(word),
                "{method} {path} quotes {word:?}: {body}"
            );
        }
    }
    assert_ne!(ids[0], ids[1], "each failure has its own id");
    let r = send(&base, None, Method::GET, "/healthz", None).await;
    assert_eq!(
        (r.status, r.body),
        (
            503,
            json!({"status": "unavailable", "reason": "the store failed"})
        )
    );
}

/// The committed document is what the code generates, and what the daemon serves.
/// Regenerate with `KUP_UPDATE_OPENAPI=1 cargo test -p kup-api --test http openapi`.
#[tokio::test]
async fn the_committed_openapi_document_matches_the_code() {
    let generated = kup_api::openapi().to_pretty_json().unwrap() + "\n";
    let path = format!("{}/../../openapi/v1.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("KUP_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/v1.json is out of date: run KUP_UPDATE_OPENAPI=1 cargo test -p kup-api --test http openapi"
    );
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let served = send(&base, Some(READER), Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(
        served.body,
        serde_json::from_str::<Value>(&generated).unwrap()
    );
}

/// The shapes StarlingX's `system` client reads (reference: sysinv-client-protocol.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_have_the_sysinv_shapes() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let get = |p: &'static str| {
        let base = base.clone();
        async move { send(&base, Some(READER), Method::GET, p, None).await.body }
    };
    assert_eq!(get("/v1/kube_upgrade").await, json!({"kube_upgrades": []}));
    let versions = get("/v1/kube_versions").await;
    assert_eq!(
        versions["kube_versions"][0],
        json!({"version": "v1.16.1", "target": true, "state": "active"})
    );
    let hosts = get("/v1/ihosts").await;
    let c0 = &hosts["ihosts"][0];
    for field in [
        "id",
        "uuid",
        "hostname",
        "personality",
        "subfunctions",
        "administrative",
        "operational",
        "availability",
        "peers",
        "install_state",
        "install_state_info",
        "created_at",
        "updated_at",
    ] {
        assert!(c0.get(field).is_some(), "ihost lacks {field}: {c0}");
    }
    assert_eq!(c0["id"], 1);
    assert_eq!(c0["capabilities"]["Personality"], "Controller-Active");

    let started = send(
        &base,
        Some(ADMIN),
        Method::POST,
        "/v1/kube_upgrade",
        Some(json!({"to_version": "1.16.2", "force": false, "recovery_attempts": 0})),
    )
    .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let uuid = started.body["uuid"].as_str().unwrap().to_string();
    assert_eq!(started.body["state"], "upgrade-started");
    assert!(started.body["updated_at"].is_null());
    let again = send(
        &base,
        Some(READER),
        Method::GET,
        &format!("/v1/kube_upgrade/{uuid}"),
        None,
    )
    .await;
    assert_eq!(again.body["uuid"], uuid.as_str());
    let rows = get("/v1/kube_host_upgrades").await;
    let row = &rows["kube_host_upgrades"][2];
    assert_eq!(
        (
            row["host_id"].clone(),
            row["control_plane_version"].clone(),
            row["kubelet_version"].clone()
        ),
        (json!(3), json!("N/A"), json!("N/A"))
    );
    let alarms = get("/v1/alarms").await;
    assert!(
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alarm_id"] == "900.007")
    );
    let health = get("/v1/health/kube-upgrade").await;
    assert!(
        health.as_str().unwrap().starts_with("System Health:\n"),
        "{health}"
    );
    let deleted = send(&base, Some(ADMIN), Method::DELETE, "/v1/kube_upgrade", None).await;
    assert_eq!(deleted.status, 400, "not complete yet");
    let events = get("/v1/events?after=1&limit=1").await;
    assert_eq!(events["events"][0]["seq"], 2);
}

/// A bundle over axum's 2 MiB default body limit is accepted (real kubelet bundles are tens
/// of MiB); a body over kup's limit gets the usual error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bundle_uploads() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let src = h.dir.path().join("big");
    std::fs::create_dir_all(src.join("files/bin")).unwrap();
    std::fs::write(
        src.join("patch.json"),
        r#"{"id": "BIG.1", "summary": "a big kubelet", "kind": "kubelet", "delivers": "v1.16.2"}"#,
    )
    .unwrap();
    // Incompressible, so the gzip'd bundle stays over 2 MiB.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("files/bin/kubelet"), noise).unwrap();
    let bytes = kup_patch::build(&src, &kup_patch::testkey::insecure_signing_key()).unwrap();
    assert!(bytes.len() > 3 * 1024 * 1024);
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/patches"))
        .header("X-Auth-Token", ADMIN)
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        h.engine.patch("BIG.1").await.unwrap().state.as_str(),
        "available"
    );
}

/// A harness whose engine also trusts the demo key, so the example bundles of
/// `examples/patches/` upload.
async fn harness_trusting_the_demo_key() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kup.db");
    let sim = kup_sim::SimCluster::new(&seed_cluster(), 0.0);
    let demo_key = std::fs::read_to_string(examples_dir().join("patches/demo-key.pub")).unwrap();
    let config = kup_engine::EngineConfig {
        catalog: sim.catalog(),
        policy: kup_core::Policy::default(),
        patch_repo: Some(kup_engine::PatchRepo {
            dir: dir.path().join("patches"),
            trusted: vec![kup_patch::parse_public_key(&demo_key).unwrap()],
            limits: kup_patch::Limits::default(),
        }),
    };
    let store = Arc::new(kup_store::SqliteStore::open(&db).await.unwrap());
    let engine = kup_engine::Engine::open(store, Arc::new(sim.clone()), config)
        .await
        .unwrap();
    Harness {
        engine: Arc::new(engine),
        sim,
        db,
        dir,
    }
}

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The value of a path parameter: a real object's where the document's path names one.
async fn known_object(base: &str, path: &str, name: &str) -> String {
    let first = |list: &'static str, key: &'static str, field: &'static str| async move {
        let r = send(base, Some(ADMIN), Method::GET, list, None).await;
        r.body[key]
            .as_array()
            .and_then(|a| a.first())
            .map(|x| match &x[field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    };
    let found = match (name, path) {
        ("version", _) => first("/v1/kube_versions", "kube_versions", "version").await,
        ("host", _) => first("/v1/ihosts", "ihosts", "hostname").await,
        ("uuid", p) if p.starts_with("/v1/kube_upgrade/") => {
            first("/v1/kube_upgrade", "kube_upgrades", "uuid").await
        }
        ("id", p) if p.starts_with("/v1/kube_host_upgrades/") => {
            first("/v1/kube_host_upgrades", "kube_host_upgrades", "id").await
        }
        ("id", p) if p.starts_with("/v1/patches/") => {
            first("/v1/patches", "patches", "patch_id").await
        }
        _ => panic!("{path}: the test knows no object for {{{name}}}: teach known_object"),
    };
    // No such object (yet): a well-formed name that is nobody's; the document must then
    // declare the answer (404) too.
    found.unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into())
}

/// A request for one operation, built from the document alone (path parameters from real
/// objects): the path with its query, and the body with its content type.
async fn request_from_document(
    base: &str,
    schemas: &schema::Schemas<'_>,
    path: &str,
    op: &Value,
) -> (String, Option<(String, Vec<u8>)>) {
    let mut concrete = path.to_string();
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap();
        match p["in"].as_str().unwrap() {
            "path" => {
                let hole = format!("{{{name}}}");
                assert!(
                    path.contains(&hole) && p["required"] == true,
                    "{path}: path parameter {name} must be in the path and required: {p}"
                );
                concrete = concrete.replace(&hole, &known_object(base, path, name).await);
            }
            "query" => {
                let example = p.get("example").or_else(|| p["schema"].get("example"));
                let value = match example {
                    Some(x) => x.clone(),
                    None if p["required"] == true => schemas.sample(&p["schema"]),
                    None => continue,
                };
                let errors = schemas.validate(&value, &p["schema"], false);
                assert!(errors.is_empty(), "{path} ?{name}={value}: {errors:?}");
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                query.push((name.to_string(), text));
            }
            other => panic!("{path}: parameters in {other} are not used by kup: {p}"),
        }
    }
    assert!(!concrete.contains('{'), "{path}: undeclared path parameter");
    let url = reqwest::Url::parse_with_params(&format!("http://x{concrete}"), &query).unwrap();
    let path_and_query = match url.query() {
        Some(q) if !q.is_empty() => format!("{}?{q}", url.path()),
        _ => url.path().to_string(),
    };
    let Some(content) = op["requestBody"]["content"].as_object() else {
        return (path_and_query, None);
    };
    let (content_type, media) = content.iter().next().expect("a request body has content");
    let body = match content_type.as_str() {
        "application/json" => {
            let value = media
                .get("example")
                .cloned()
                .unwrap_or_else(|| schemas.sample(&media["schema"]));
            let errors = schemas.validate(&value, &media["schema"], false);
            assert!(
                errors.is_empty(),
                "{path}: {value} breaks its schema: {errors:?}"
            );
            serde_json::to_vec(&value).unwrap()
        }
        "application/octet-stream" => {
            assert_eq!(
                media["schema"]["format"], "binary",
                "{path}: a file upload is a binary string: {media}"
            );
            std::fs::read(examples_dir().join("patches/K8S-1.16.2-PLATFORM.patch")).unwrap()
        }
        other => panic!("{path}: no generator for {other}"),
    };
    (path_and_query, Some((content_type.clone(), body)))
}

/// The reply is one the document declares for the operation: the status, the content type,
/// and a body that validates against the declared schema (no undeclared property either).
fn check_against_document(schemas: &schema::Schemas<'_>, what: &str, op: &Value, r: &Reply) {
    let responses = op["responses"].as_object().unwrap();
    let declared = responses.get(&r.status.to_string()).unwrap_or_else(|| {
        panic!(
            "{what}: status {} is not declared (only {:?}): {}",
            r.status,
            responses.keys().collect::<Vec<_>>(),
            r.body
        )
    });
    let Some(content) = declared["content"].as_object() else {
        assert!(
            r.body.is_null(),
            "{what}: {} has a body: {}",
            r.status,
            r.body
        );
        return;
    };
    let essence = r.content_type.split(';').next().unwrap().trim();
    let media = content.get(essence).unwrap_or_else(|| {
        panic!(
            "{what}: {} came as {essence:?}, declared {:?}: {}",
            r.status,
            content.keys().collect::<Vec<_>>(),
            r.body
        )
    });
    if essence == "text/plain" {
        // `/metrics`: Prometheus text, as declared.
        assert!(!r.json, "{what}: declared text, came as JSON");
        return;
    }
    assert!(r.json, "{what}: the body is not JSON: {}", r.body);
    let errors = schemas.validate(&r.body, &media["schema"], true);
    assert!(
        errors.is_empty(),
        "{what}: {} does not match its schema: {errors:#?}\n{}",
        r.status,
        r.body
    );
}

/// The reasons kup-api gives for a request whose form is wrong (as opposed to a command the
/// cluster's state refuses): a request built from the document must never get one.
const FORM_ERRORS: &[&str] = &[
    "Malformed JSON",
    "Invalid request",
    "Invalid query",
    "Invalid URL",
    "must be JSON",
    "must be a string",
    "Invalid patch",
    "can not be changed here",
    "is mandatory",
    "Invalid action",
    "Invalid state",
    "must be at least",
];

/// Walks the served document: for every operation, a request built from the document alone
/// (as any client generated from it would send), sent without a token, with a reader token
/// when it changes something, and with an admin token; every reply must be one the document
/// declares. Creations run first and deletions last, so most operations meet a real object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_served_document_says() {
    let h = harness_trusting_the_demo_key().await;
    let base = serve(&h).await;
    let served = send(&base, Some(READER), Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(served.status, 200);
    let doc = served.body;
    let schemas = schema::Schemas { doc: &doc };
    let global_security = doc.get("security").cloned().unwrap_or(json!([]));

    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let stage = match method.as_str() {
                "post" if !path.contains('{') => 0,
                "get" => 2,
                "delete" => 3,
                _ => 1,
            };
            ops.push((stage, path.clone(), method.clone(), op.clone()));
        }
    }
    ops.sort_by_key(|(stage, ..)| *stage);
    assert!(ops.len() >= 30, "{} operations", ops.len());

    let mut summary = Vec::new();
    for (_, path, method, op) in &ops {
        let what = format!("{} {path}", method.to_uppercase());
        for (status, response) in op["responses"].as_object().unwrap() {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what}: response {status} has no description"
            );
        }
        let m: Method = method.to_uppercase().parse().unwrap();
        let (target, body) = request_from_document(&base, &schemas, path, op).await;
        let body = || body.as_ref().map(|(t, b)| (t.as_str(), b.clone()));
        let security = op.get("security").unwrap_or(&global_security);
        // Alternatives; an empty one (`{}`) lets a request without a token through.
        let needs_token = security
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|r| r != &json!({})));
        let changes = m != Method::GET;

        let anonymous = send_bytes(&base, None, m.clone(), &target, body()).await;
        check_against_document(&schemas, &format!("{what} without a token"), op, &anonymous);
        if needs_token {
            assert_eq!(anonymous.status, 401, "{what} without a token");
        }
        if needs_token && changes {
            let r = send_bytes(&base, Some(READER), m.clone(), &target, body()).await;
            check_against_document(&schemas, &format!("{what} as a reader"), op, &r);
            assert_eq!(r.status, 403, "{what} as a reader");
        }
        let r = send_bytes(&base, Some(ADMIN), m.clone(), &target, body()).await;
        check_against_document(&schemas, &format!("{what} {target}"), op, &r);
        if r.status == 400 {
            let reason = r.reason();
            assert!(
                !FORM_ERRORS.iter().any(|f| reason.contains(f)),
                "{what} {target}: a request that follows the document was refused for its form: {reason}"
            );
        }
        if !changes {
            assert_eq!(r.status, 200, "{what} {target}: {}", r.body);
        }
        summary.push(format!(
            "{} {what}: {}",
            r.status,
            if r.status >= 400 {
                r.reason()
            } else {
                String::new()
            }
        ));
    }
    // Not asserted (refusals are declared answers too), but shown when the test fails.
    eprintln!("{}", summary.join("\n"));
}

/// Whatever refuses a request (axum's extractors and routing, a body limit, kup's own
/// checks) answers with sysinv's JSON error body and the right status, never plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_the_json_error_body() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let big_json = format!(
        r#"{{"to_version": "v1.16.2", "pad": "{}"}}"#,
        "x".repeat(2 << 20)
    );
    for (method, path, body, status, says) in [
        // A path parameter that is not UTF-8, or is cut off mid-character.
        (Method::GET, "/v1/ihosts/%FF%FE", None, 400, "UTF-8"),
        (Method::GET, "/v1/kube_versions/%E2%82", None, 400, "UTF-8"),
        // Not a percent-escape at all: taken literally, as an unknown host.
        (
            Method::GET,
            "/v1/ihosts/%ZZ",
            None,
            404,
            "Host %ZZ not found",
        ),
        // Query parameters of the wrong type, or out of range.
        (
            Method::GET,
            "/v1/upgrade/plan?max_parallel_worker_hosts=many",
            None,
            400,
            "Invalid query",
        ),
        (
            Method::GET,
            "/v1/events?limit=-1",
            None,
            400,
            "Invalid query",
        ),
        // A method the resource does not have; a resource that does not exist.
        (Method::PUT, "/v1/ihosts", None, 405, "Method not allowed"),
        (Method::DELETE, "/healthz", None, 405, "Method not allowed"),
        (
            Method::GET,
            "/v1/nothing/here",
            None,
            404,
            "No such resource",
        ),
        (Method::GET, "/elsewhere", None, 404, "No such resource"),
        // A JSON body over the JSON limit.
        (
            Method::POST,
            "/v1/kube_upgrade",
            Some(big_json.clone()),
            413,
            "larger than 1048576 bytes",
        ),
        (
            Method::POST,
            "/v1/ihosts/worker-0/kube_upgrade_kubelet",
            Some(big_json.clone()),
            413,
            "larger than 1048576 bytes",
        ),
    ] {
        let what = format!("{method} {path}");
        let r = send_raw(&base, Some(ADMIN), method, path, body, true).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert_eq!(r.content_type, "application/json", "{what}");
        let reason = r.reason();
        assert!(reason.contains(says), "{what}: {reason}");
        assert!(!reason.contains('\n'), "{what}: {reason:?}");
    }
    assert_eq!(
        h.state().await,
        "none",
        "nothing was started by any of that"
    );
}

/// An upload whose announced size is over the limit is refused before a byte of it is read
/// (the test sends none) or a slot is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_announced_too_large_is_a_413_before_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let mut tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/patches HTTP/1.1\r\nHost: kup\r\nX-Auth-Token: {ADMIN}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        kup_api::MAX_BUNDLE_BODY + 1
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The reply comes while the body is still owed; the server then closes the connection.
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{reply}"
    );
    assert!(reply.contains("larger than"), "{reply}");
}

/// A body that sends what it starts with, then each chunk the test sends, and ends when the
/// test's sender is dropped.
struct HeldBody {
    first: Option<Vec<u8>>,
    more: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
}

impl http_body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first.into()))));
        }
        self.more
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c.into()))))
    }
}

/// Uploads hold their bundle in memory, so only `max_concurrent_uploads` run at once: with
/// two held open mid-body, a third waits, then is refused with a 503 it may retry; a request
/// without a token or with a reader's is still refused for that first; once the two finish,
/// uploads are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_concurrent_upload_is_told_to_retry() {
    let h = harness_trusting_the_demo_key().await;
    let tokens = Tokens::new([(Role::Admin, ADMIN.into()), (Role::Reader, READER.into())]);
    let limits = kup_api::Limits {
        max_concurrent_uploads: 2,
        upload_wait: std::time::Duration::from_millis(200),
        ..kup_api::Limits::default()
    };
    let app = kup_api::router_with(Arc::clone(&h.engine), tokens, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let bundle =
        |id: &str| std::fs::read(examples_dir().join(format!("patches/{id}.patch"))).unwrap();
    // Each upload sends half its bundle, then waits for the test to send the rest.
    let mut rests = Vec::new();
    let mut upload = |bytes: Vec<u8>, token: &'static str| {
        let (more, rest) = tokio::sync::mpsc::unbounded_channel();
        let half = bytes.len() / 2;
        rests.push((more, bytes[half..].to_vec()));
        let base = base.clone();
        tokio::spawn(async move {
            let body = HeldBody {
                first: Some(bytes[..half].to_vec()),
                more: rest,
            };
            let res = reqwest::Client::new()
                .post(format!("{base}/v1/patches"))
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", bytes.len())
                .body(reqwest::Body::wrap(body))
                .send()
                .await
                .unwrap();
            reply(res).await
        })
    };
    let mut held: Vec<_> = [
        "K8S-1.16.2-PLATFORM",
        "K8S-1.16.2-KUBEADM",
        "K8S-1.16.2-KUBELET",
    ]
    .into_iter()
    .map(|id| upload(bundle(id), ADMIN))
    .collect();
    // Two of them hold the slots and cannot finish before the release: the first to answer
    // is the one that found none.
    // (The timeout only turns a regression into a failure instead of a hang.)
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures_select(&mut held),
    );
    let (refused, index, _) = first
        .await
        .expect("no upload was refused while two held the slots");
    let refused = refused.unwrap();
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.content_type, "application/json");
    assert!(
        refused
            .reason()
            .starts_with("Too many uploads in progress (at most 2 at a time): try again"),
        "{}",
        refused.reason()
    );
    held.remove(index);
    rests.remove(index);
    // Authentication comes first, slots or not.
    let anonymous = send_bytes(
        &base,
        None,
        Method::POST,
        "/v1/patches",
        Some(("application/octet-stream", b"x".to_vec())),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    let reader = send_bytes(
        &base,
        Some(READER),
        Method::POST,
        "/v1/patches",
        Some(("application/octet-stream", b"x".to_vec())),
    )
    .await;
    assert_eq!(reader.status, 403);

    for (more, rest) in rests {
        more.send(rest).unwrap();
    }
    for task in held {
        let r = task.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // The slots are free again: the refused bundle uploads now.
    let patches = send(&base, Some(ADMIN), Method::GET, "/v1/patches", None).await;
    let uploaded: Vec<&str> = patches.body["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["patch_id"].as_str().unwrap())
        .collect();
    let missing = [
        "K8S-1.16.2-PLATFORM",
        "K8S-1.16.2-KUBEADM",
        "K8S-1.16.2-KUBELET",
    ]
    .into_iter()
    .find(|id| !uploaded.contains(id))
    .unwrap();
    let r = send_bytes(
        &base,
        Some(ADMIN),
        Method::POST,
        "/v1/patches",
        Some(("application/octet-stream", bundle(missing))),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Every integer query parameter of the document is accepted exactly within the bounds the
/// document gives it (its `minimum` and `maximum`, else its format's): the least and the
/// largest value are not refused for their form, one beyond either is a 400. (A parameter
/// declared `int32` but read as a `u32` took 2147483648; one read as a `u32` but declared
/// without a maximum would refuse 4294967296 that the document allows.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_integer_parameter_is_accepted_exactly_within_its_declared_bounds() {
    let h = Harness::new(seed_cluster()).await;
    // An event to read, so that the longest long poll answers at once.
    h.ok(kup_core::Command::Lock {
        host: "worker-0".into(),
        force: false,
    })
    .await;
    let base = serve(&h).await;
    let doc = serde_json::to_value(kup_api::openapi()).unwrap();
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let schema = &p["schema"];
                if schema["type"] != "integer" || p["in"] != "query" {
                    continue;
                }
                assert_eq!(method, "get", "{path}: only reads take integer parameters");
                let name = p["name"].as_str().unwrap();
                let (format_lo, format_hi) = match schema["format"].as_str() {
                    Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
                    Some("int64") => (i128::from(i64::MIN), i128::from(i64::MAX)),
                    other => panic!("{path} ?{name}: format {other:?}"),
                };
                let bound = |key: &str, default: i128| {
                    schema.get(key).map_or(default, |b| {
                        b.as_i64()
                            .map(i128::from)
                            .or(b.as_u64().map(i128::from))
                            .unwrap_or_else(|| panic!("{path} ?{name}: {key} {b}"))
                    })
                };
                let (lo, hi) = (bound("minimum", format_lo), bound("maximum", format_hi));
                assert!(lo <= hi, "{path} ?{name}: {schema}");
                let get = |value: i128| {
                    let base = base.clone();
                    let target = format!("{path}?{name}={value}");
                    async move {
                        let r = send(&base, Some(ADMIN), Method::GET, &target, None).await;
                        (target, r)
                    }
                };
                for value in [lo, hi] {
                    let (target, r) = get(value).await;
                    if r.status == 400 {
                        let reason = r.reason();
                        assert!(
                            !FORM_ERRORS.iter().any(|f| reason.contains(f)),
                            "{target}: the document allows it, the server refused it: {reason}"
                        );
                    }
                    assert!(r.status < 500, "{target}: {:?}", r.body);
                }
                for value in [lo - 1, hi + 1] {
                    let (target, r) = get(value).await;
                    assert_eq!(
                        r.status, 400,
                        "{target}: the document does not allow it, the server took it: {:?}",
                        r.body
                    );
                    assert!(
                        r.reason().contains("Invalid query"),
                        "{target}: {}",
                        r.reason()
                    );
                }
                checked.push(format!("{path} ?{name} {lo}..={hi}"));
            }
        }
    }
    assert_eq!(
        checked.len(),
        5,
        "after, limit, wait, max_parallel_worker_hosts, min_free_disk_gib: {checked:?}"
    );
}

/// A response read off a raw connection: its status line and its error reason.
async fn raw_reply(tcp: &mut tokio::net::tcp::OwnedReadHalf) -> (String, String, String) {
    use tokio::io::AsyncReadExt;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until the server closes; a reset after the reply (the body it did not read) ends it too.
    while let Ok(n) = tcp.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    let reply = String::from_utf8(reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let reason = serde_json::from_str::<kup_types::ErrorBody>(body)
        .map(|b| b.reason())
        .unwrap_or_else(|_| body.to_string());
    (status, content_type, reason)
}

/// An upload's body has a deadline, whole: two uploads that announce 1000 bytes and send one
/// now and then (never pausing long enough for a timeout between pieces) hold both slots only
/// until it passes, get a 408 with the JSON error body, and free their slots, so the next
/// upload goes through. The 408 is in the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_trickling_past_its_deadline_is_a_408_and_frees_its_slot() {
    use tokio::io::AsyncWriteExt;
    let h = harness_trusting_the_demo_key().await;
    let tokens = Tokens::new([(Role::Admin, ADMIN.into()), (Role::Reader, READER.into())]);
    let body_time = std::time::Duration::from_millis(500);
    let limits = kup_api::Limits {
        max_concurrent_uploads: 2,
        upload_wait: std::time::Duration::from_millis(200),
        upload_body_time: body_time,
        upload_min_rate: 64 * 1024,
        upload_max_body_time: std::time::Duration::from_secs(2),
    };
    let app = kup_api::router_with(Arc::clone(&h.engine), tokens, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let began = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = tcp.into_split();
        let head = format!(
            "POST /v1/patches HTTP/1.1\r\nHost: kup\r\nX-Auth-Token: {ADMIN}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
        );
        write.write_all(head.as_bytes()).await.unwrap();
        // A byte every 50 ms: 1000 of them would take 50 s.
        let trickle = tokio::spawn(async move {
            loop {
                if write.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        let reply = tokio::spawn(async move {
            let reply = raw_reply(&mut read).await;
            (reply, began.elapsed())
        });
        slow.push((trickle, reply));
    }
    for (trickle, reply) in slow {
        // (The timeout only turns a regression into a failure instead of a hang.)
        let ((status, content_type, reason), took) =
            tokio::time::timeout(std::time::Duration::from_secs(20), reply)
                .await
                .expect("an upload trickling its body held its slot past its deadline")
                .unwrap();
        trickle.abort();
        assert!(status.starts_with("HTTP/1.1 408"), "{status}: {reason}");
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert!(
            reason.starts_with("The upload's body did not arrive in time: a bundle is given 0.5 s plus its size at 65536 bytes per second (at most 2 s), 0.5 s for this one"),
            "{reason}"
        );
        assert!(took >= body_time, "refused after {took:?}");
    }
    // Both slots are free again: a bundle uploads at once.
    let bundle = std::fs::read(examples_dir().join("patches/K8S-1.16.2-PLATFORM.patch")).unwrap();
    let r = send_bytes(
        &base,
        Some(ADMIN),
        Method::POST,
        "/v1/patches",
        Some(("application/octet-stream", bundle)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let doc = serde_json::to_value(kup_api::openapi()).unwrap();
    assert!(
        doc["paths"]["/v1/patches"]["post"]["responses"]["408"]["content"]["application/json"]
            .is_object(),
        "the 408 is declared"
    );
}

/// The client sends every name exactly as given, and the server looks up exactly that: a
/// host or patch name with a tab, CR or LF in it (which a URL parser silently drops), or with
/// characters a URL reads as structure, is nobody's, so it is refused with the name as given,
/// and nothing is locked. Names no URL path can carry (empty, `.`, `..`) are refused by the
/// client before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_reach_the_server_exactly_as_the_client_was_given_them() {
    let h = harness_trusting_the_demo_key().await;
    let base = serve(&h).await;
    let c = kup_client::Client::new(&base, ADMIN).unwrap();
    let bundle = std::fs::read(examples_dir().join("patches/K8S-1.16.2-PLATFORM.patch")).unwrap();
    c.patch_upload(bundle).await.unwrap();
    let events = h.events().await.len();
    for suffix in [
        "\t",
        "\r",
        "\n",
        "\nError: all good",
        "\r\n",
        " ",
        "/",
        "/apply",
        "?x=1",
        "#x",
        "\\",
        "%00",
        "%2F",
        "/..",
    ] {
        let host = format!("worker-0{suffix}");
        let shown = format!("{host:?}");
        for e in [
            c.host_action(&host, "lock").await.unwrap_err(),
            c.host(&host).await.unwrap_err(),
            c.kube_upgrade_kubelet(&host, false).await.unwrap_err(),
            c.patch_host_install(&host).await.unwrap_err(),
        ] {
            assert_eq!(e.status(), Some(404), "{shown}: {e}");
            assert_eq!(e.to_string(), format!("Host {host} not found"), "{shown}");
        }
        let patch = format!("K8S-1.16.2-PLATFORM{suffix}");
        for e in [
            c.patch(&patch).await.unwrap_err(),
            c.patch_apply(&patch).await.unwrap_err(),
        ] {
            assert_eq!(e.status(), Some(404), "{patch:?}: {e}");
            assert_eq!(
                e.to_string(),
                format!("Patch {patch} not found"),
                "{patch:?}"
            );
        }
        let version = format!("v1.16.2{suffix}");
        let e = c.kube_version(&version).await.unwrap_err();
        assert!(matches!(e.status(), Some(400 | 404)), "{version:?}: {e}");
    }
    // The names themselves are found, and nothing above changed anything.
    assert_eq!(c.host("worker-0").await.unwrap().hostname, "worker-0");
    assert_eq!(
        c.patch("K8S-1.16.2-PLATFORM").await.unwrap().state.as_str(),
        "available"
    );
    assert_eq!(
        h.events().await.len(),
        events,
        "nothing was locked or applied"
    );
    for name in ["", ".", ".."] {
        let e = c.host_action(name, "lock").await.unwrap_err();
        assert!(
            matches!(e, kup_client::ClientError::Config(_)),
            "{name:?}: {e:?}"
        );
    }
    assert_eq!(h.events().await.len(), events);
}

/// The first of several tasks to finish: its output, its index, and the others.
async fn futures_select<T>(
    tasks: &mut [tokio::task::JoinHandle<T>],
) -> (Result<T, tokio::task::JoinError>, usize, ()) {
    std::future::poll_fn(|cx| {
        for (i, t) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(t).poll(cx) {
                return std::task::Poll::Ready((out, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The conformance test is only as good as its schema checker: it must refuse what breaks a
/// schema, keyword by keyword, and never pass a keyword it does not know.
#[test]
fn the_schema_checker_refuses_what_breaks_a_schema() {
    let doc = json!({"components": {"schemas": {
        "Host": {"type": "object", "required": ["name", "at"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z]+-[0-9]$"},
            "at": {"type": "string", "format": "date-time"},
            "state": {"type": "string", "enum": ["locked", "unlocked"]},
            "count": {"type": "integer", "format": "int32", "minimum": 1},
            "peer": {"oneOf": [{"$ref": "#/components/schemas/Host"}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}}
        }}
    }}});
    let schemas = schema::Schemas { doc: &doc };
    let host = json!({"$ref": "#/components/schemas/Host"});
    let good = json!({"name": "worker-0", "at": "2020-02-20T16:08:48.854869+00:00",
                      "state": "locked", "count": 2, "peer": null, "tags": ["a"]});
    assert_eq!(schemas.validate(&good, &host, true), Vec::<String>::new());
    for (change, says) in [
        (json!({"name": 5}), "is not of type"),
        (json!({"name": "Worker 0"}), "does not match"),
        (json!({"at": "yesterday"}), "is not a date-time"),
        (json!({"state": "broken"}), "is not one of"),
        (json!({"count": 0}), "breaks minimum"),
        (json!({"count": 1u64 << 40}), "outside int32"),
        (json!({"peer": {"name": "x"}}), "matches 0 of the 2"),
        (json!({"tags": [1]}), "is not of type"),
        (json!({"extra": true}), "is not in the schema"),
    ] {
        let mut bad = good.clone();
        bad.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        let errors = schemas.validate(&bad, &host, true);
        assert!(
            errors.iter().any(|e| e.contains(says)),
            "{change}: {errors:?}"
        );
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("at");
    assert!(schemas.validate(&missing, &host, true)[0].contains("\"at\" is missing"));
    let unknown = json!({"type": "string", "contains": {}});
    assert!(schemas.validate(&json!("x"), &unknown, false)[0].contains("does not know"));
    // A value built from a schema passes it.
    let sample = schemas.sample(&json!({"type": "object", "required": ["a"], "properties": {
        "a": {"type": "array", "items": {"type": "integer", "minimum": 3}}}}));
    assert_eq!(sample, json!({"a": [3]}));
}

/// `/healthz` tells the truth: 503 with the reason once the cluster cannot be reached, and
/// out-of-range durations no longer panic the simulation (every request still answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_tells_the_truth() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let r = send(&base, None, Method::GET, "/healthz", None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"status": "ok"})));
    // A step scaled beyond any clock: accepted, running, and the daemon still answers.
    h.sim.set_time_scale(f64::MAX);
    let r = send(
        &base,
        Some(ADMIN),
        Method::PATCH,
        "/v1/ihosts/worker-0",
        Some(json!([{"op": "replace", "path": "/action", "value": "lock"}])),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send(&base, Some(READER), Method::GET, "/v1/ihosts", None).await;
    assert_eq!(r.status, 200);
    let r = send(&base, None, Method::GET, "/healthz", None).await;
    assert_eq!(r.status, 200);
    h.sim.halt();
    let r = send(&base, None, Method::GET, "/healthz", None).await;
    assert_eq!(
        (r.status, r.body),
        (
            503,
            json!({"status": "unavailable", "reason": "the cluster cannot be reached: the simulation has stopped"})
        )
    );
}

/// The event long poll: it answers as soon as a command's events are committed, with them and
/// the log's end; with nothing new it answers empty once `wait` has passed; a follower that
/// fell behind reads the gap; `wait` beyond 300 s is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_long_poll_answers_when_an_event_is_committed() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let end = send(&base, Some(READER), Method::GET, "/v1/events?after=0", None).await;
    assert_eq!(end.status, 200);
    let last = end.body["last_seq"].as_i64().unwrap();
    assert_eq!(
        end.body["events"]
            .as_array()
            .unwrap()
            .last()
            .map(|e| e["seq"].as_i64().unwrap()),
        (last > 0).then_some(last)
    );

    // Nothing new: an empty answer after the wait.
    let started = std::time::Instant::now();
    let idle = send(
        &base,
        Some(READER),
        Method::GET,
        &format!("/v1/events?after={last}&wait=1"),
        None,
    )
    .await;
    assert_eq!(idle.status, 200);
    assert_eq!(idle.body["events"], json!([]));
    assert_eq!(idle.body["last_seq"], last);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // A command while a follower waits: it is woken with the command's events.
    let follower = {
        let base = base.clone();
        tokio::spawn(async move {
            let target = format!("/v1/events?after={last}&wait=60");
            send(&base, Some(READER), Method::GET, &target, None).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!follower.is_finished(), "answered before anything happened");
    let started = std::time::Instant::now();
    h.ok(Command::Lock {
        host: "worker-0".into(),
        force: false,
    })
    .await;
    let woken = follower.await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(woken.status, 200);
    let events = woken.body["events"].as_array().unwrap();
    assert_eq!(events[0]["seq"], last + 1);
    assert_eq!(events[0]["message"], "host-lock worker-0 accepted");
    assert!(woken.body["last_seq"].as_i64().unwrap() > last);

    // Behind: the gap is read from the log, at once.
    let behind = send(
        &base,
        Some(READER),
        Method::GET,
        &format!("/v1/events?after={last}&wait=60&limit=1"),
        None,
    )
    .await;
    assert_eq!(behind.body["events"].as_array().unwrap().len(), 1);

    let r = send(
        &base,
        Some(READER),
        Method::GET,
        "/v1/events?wait=301",
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.reason(),
        "Invalid query: wait must be at most 300 seconds, got 301"
    );
}

/// A strategy is created from VIM's body (dash-style keys) as well as kup's; VIM's rules for
/// the keys kup has no use for hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_is_created_from_a_vim_style_body() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let path = "/v1/kube_upgrade_strategy";
    let bad = json!({"to-version": "v1.16.2", "controller-apply-type": "parallel"});
    let r = send(&base, Some(ADMIN), Method::POST, path, Some(bad)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.reason(),
        "Invalid strategy: controller-apply-type must be 'serial' for kube-upgrade"
    );
    let r = send(
        &base,
        Some(ADMIN),
        Method::POST,
        path,
        Some(json!({"to_version": "v1.16.2", "max_parallel_worker_hosts": 0})),
    )
    .await;
    assert_eq!(
        r.reason(),
        "Invalid strategy: max-parallel-worker-hosts must be from 1 to 1000, got 0"
    );
    let vim = json!({
        "to-version": "1.16.2",
        "controller-apply-type": "serial",
        "storage-apply-type": "ignore",
        "worker-apply-type": "parallel",
        "max-parallel-worker-hosts": 5,
        "default-instance-action": "stop-start",
        "alarm-restrictions": "relaxed"
    });
    let r = send(&base, Some(ADMIN), Method::POST, path, Some(vim)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = &r.body["strategy"];
    assert_eq!(s["state"], "ready-to-apply");
    assert_eq!(s["to_version"], "v1.16.2");
    assert_eq!(s["max_parallel_worker_hosts"], 5);
    assert_eq!(s["alarm_restrictions"], "relaxed");
    // One at a time; a reader may look but not act.
    let r = send(&base, Some(READER), Method::GET, path, None).await;
    assert_eq!(r.status, 200);
    let r = send(
        &base,
        Some(READER),
        Method::POST,
        &format!("{path}/actions"),
        Some(json!({"action": "apply-all"})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = send(
        &base,
        Some(ADMIN),
        Method::POST,
        &format!("{path}/actions"),
        Some(json!({"action": "apply-stage"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.reason().contains("not supported"), "{}", r.reason());
}

/// The host lists are encoded once per state of the cluster: repeated reads answer the same
/// bytes, and any change, to the store (an upgrade started) or to the cluster (a host locked
/// by kup or changed underneath it), shows in the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_lists_follow_every_change() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let read = |path: &'static str| {
        let base = base.clone();
        async move {
            let reply = send(&base, Some(READER), Method::GET, path, None).await;
            assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
            assert_eq!(reply.content_type, "application/json", "{path}");
            reply.body
        }
    };
    let admin_of = |body: &Value, host: &str| {
        body["ihosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["hostname"] == host)
            .map(|x| x["administrative"].as_str().unwrap().to_string())
            .unwrap()
    };
    let first = read("/v1/ihosts").await;
    assert_eq!(
        read("/v1/ihosts").await,
        first,
        "the same state, the same body"
    );
    assert_eq!(admin_of(&first, "worker-0"), "unlocked");

    // A change kup makes (the lock ends in the cluster and in the store).
    h.ok(Command::Lock {
        host: "worker-0".into(),
        force: false,
    })
    .await;
    h.engine.wait_idle().await;
    assert_eq!(admin_of(&read("/v1/ihosts").await, "worker-0"), "locked");

    // A change underneath kup: the cluster's own view changes.
    h.sim.mutate(|m| {
        m.host_mut("worker-1").unwrap().administrative = kup_types::AdminState::Locked;
    });
    assert_eq!(admin_of(&read("/v1/ihosts").await, "worker-1"), "locked");

    // A change to the store alone: the start rewrites every host's upgrade row.
    let before = read("/v1/kube_host_upgrades").await;
    assert_eq!(read("/v1/kube_host_upgrades").await, before);
    h.sim.mutate(|m| {
        m.host_mut("worker-1").unwrap().administrative = kup_types::AdminState::Unlocked;
    });
    h.ok(Command::Unlock {
        host: "worker-0".into(),
        force: false,
    })
    .await;
    h.engine.wait_idle().await;
    let unlocked = read("/v1/kube_host_upgrades").await;
    h.ok(Command::Start {
        to_version: "v1.16.2".into(),
        force: true,
        alarm_ignore: vec![],
    })
    .await;
    let started = read("/v1/kube_host_upgrades").await;
    let stamps = |body: &Value| {
        body["kube_host_upgrades"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["updated_at"].clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(stamps(&started), stamps(&unlocked), "{started}");
}

/// The dashboard's page and assets answer without a token (they hold no data), each with the
/// page's security headers and an entity tag a browser revalidates with; the page loads
/// nothing from anywhere but this daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_is_served_with_its_security_headers() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let client = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
        };
        assert_eq!(header("content-type"), kind, "{path}");
        assert_eq!(header("content-security-policy"), kup_api::dashboard::CSP);
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-cache");
        let etag = header("etag");
        let body = res.text().await.unwrap();
        assert!(body.len() > 1000, "{path}");
        // No other origin: the one absolute URL is SVG's namespace, which is a name.
        let external = body
            .replace("http://www.w3.org/2000/svg", "")
            .contains("://");
        assert!(!external, "{path} names another origin");
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{path}: inline code"
        );
        let again = client
            .get(format!("{base}{path}"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.text().await.unwrap().is_empty());
    }
    let head = client.head(format!("{base}/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let missing = send(&base, None, Method::GET, "/ui/missing.js", None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json);
}

/// `/v1/dashboard` whole or for named hosts (what the page re-reads after events), the tile
/// of a host a command changed, a host's findings and events, and the token's role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_follow_the_cluster() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let read = |path: String, token: &'static str| {
        let base = base.clone();
        async move { send(&base, Some(token), Method::GET, &path, None).await }
    };
    let all = read("/v1/dashboard".into(), READER).await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    let hosts = all.body["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 6);
    assert!(hosts.iter().all(|t| t["state"] == "idle"), "{hosts:?}");
    assert_eq!(all.body["cluster"]["version"], "v1.16.1");
    assert_eq!(all.body["strategy"], Value::Null);

    let some = read(
        "/v1/dashboard?hosts=worker-1,nobody,controller-0".into(),
        READER,
    )
    .await;
    let names: Vec<&str> = some.body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["worker-1", "controller-0"]);
    let none = read("/v1/dashboard?hosts=".into(), READER).await;
    assert_eq!(none.body["hosts"], json!([]));
    assert_eq!(none.body["cluster"], all.body["cluster"]);
    let too_many = (0..1001)
        .map(|i| format!("h{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let refused = read(format!("/v1/dashboard?hosts={too_many}"), READER).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.reason().contains("at most 1000 hosts"),
        "{}",
        refused.reason()
    );
    assert_eq!(
        send(&base, None, Method::GET, "/v1/dashboard", None)
            .await
            .status,
        401
    );

    h.ok(Command::Lock {
        host: "worker-0".into(),
        force: false,
    })
    .await;
    h.engine.wait_idle().await;
    let after = read("/v1/dashboard?hosts=worker-0".into(), READER).await;
    assert_eq!(after.body["hosts"][0]["state"], "locked");
    assert!(after.body["last_seq"].as_i64().unwrap() > all.body["last_seq"].as_i64().unwrap());

    let events = read("/v1/events?subject=worker-0".into(), READER).await;
    let events = events.body["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["subject"] == "worker-0"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("host-lock worker-0 accepted")),
        "{events:?}"
    );
    let later = events.last().unwrap()["seq"].as_i64().unwrap();
    let none = read(format!("/v1/events?subject=worker-0&after={later}"), READER).await;
    assert_eq!(none.body["events"], json!([]));

    let findings = read("/v1/ihosts/worker-1/findings".into(), READER).await;
    assert_eq!(findings.status, 200, "{:?}", findings.body);
    assert_eq!(findings.body["hostname"], "worker-1");
    assert!(["OK", "WARNING", "UNSAFE"].contains(&findings.body["verdict"].as_str().unwrap()));
    assert_eq!(findings.body["target"], "v1.16.2");
    let missing = read("/v1/ihosts/nobody/findings".into(), READER).await;
    assert_eq!(missing.status, 404);

    assert_eq!(
        read("/v1/token".into(), READER).await.body,
        json!({"role": "reader"})
    );
    assert_eq!(
        read("/v1/token".into(), ADMIN).await.body,
        json!({"role": "admin"})
    );
}
