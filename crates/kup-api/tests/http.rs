//! The API over real HTTP on loopback: every refusal, bad input, races, auth, the OpenAPI
//! document.

#[path = "../../kup-engine/tests/common/mod.rs"]
mod common;

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
    body: Value,
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
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        if json_type {
            req = req.header("Content-Type", "application/json");
        }
        req = req.body(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        content_type,
        body,
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
        Command::Swact { host } => (Method::PATCH, format!("/v1/ihosts/{host}"), action("swact")),
        Command::PatchApply { id } => (Method::POST, format!("/v1/patches/{id}/apply"), None),
        Command::PatchRemove { id } => (Method::POST, format!("/v1/patches/{id}/remove"), None),
        Command::PatchDelete { id } => (Method::DELETE, format!("/v1/patches/{id}"), None),
        Command::PatchHostInstall { host } => (
            Method::POST,
            format!("/v1/ihosts/{host}/patch_install"),
            None,
        ),
        Command::PatchUpload(_) => {
            panic!("uploads carry a bundle; they are tested with real bundles")
        }
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

/// Every route of the OpenAPI document: 401 without or with a wrong token, 403 for a reader
/// on anything that changes state, and never 401/403 for a reader that only reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_enforced_on_every_route_in_the_openapi_document() {
    let h = Harness::new(seed_cluster()).await;
    let base = serve(&h).await;
    let doc = serde_json::to_value(kup_api::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{version}", "v1.16.2")
            .replace("{uuid}", "00000000-0000-0000-0000-000000000000")
            .replace("{host}", "worker-0")
            .replace("{id}", "1");
        for (method, _) in item.as_object().unwrap() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let body = (m != Method::GET && m != Method::DELETE).then(|| json!({}));
            for token in [None, Some("wrong-token-0123456789")] {
                let r = send(&base, token, m.clone(), &concrete, body.clone()).await;
                assert_eq!(r.status, 401, "{method} {path} with {token:?}");
                assert!(r.reason().contains("Authentication required"));
            }
            let r = send(&base, Some(READER), m.clone(), &concrete, body.clone()).await;
            if m == Method::GET {
                assert!(
                    ![401, 403].contains(&r.status),
                    "reader GET {path}: {}",
                    r.status
                );
            } else {
                assert_eq!(r.status, 403, "reader {method} {path}");
                assert!(r.reason().contains("admin token"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 19, "{checked} routes");
    assert_eq!(
        h.events().await.len(),
        0,
        "no request without an admin token changed anything"
    );
    // Bearer tokens work too, and /healthz needs none.
    let res = reqwest::Client::new()
        .get(format!("{base}/v1/kube_versions"))
        .header("Authorization", format!("Bearer {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        send(&base, None, Method::GET, "/healthz", None)
            .await
            .status,
        200
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
