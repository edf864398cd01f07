use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

#[test]
fn error_reason_reads_the_sysinv_faultstring() {
    let body =
        serde_json::to_string(&ErrorBody::new("Client", "Host controller-1 is locked.")).unwrap();
    assert_eq!(error_reason(400, &body), "Host controller-1 is locked.");
}

#[test]
fn error_reason_falls_back_to_the_raw_text_then_the_status() {
    // `error_message` that is not the nested JSON form: the text itself.
    assert_eq!(
        error_reason(400, r#"{"error_message": "plain words"}"#),
        "plain words"
    );
    assert_eq!(
        error_reason(502, "  bad gateway from proxy\n"),
        "bad gateway from proxy"
    );
    assert_eq!(error_reason(404, ""), "HTTP 404 Not Found");
    assert_eq!(error_reason(599, " "), "HTTP 599");
}

#[test]
fn base_url_gets_v1_once_and_keeps_a_prefix() {
    let cases = [
        ("http://127.0.0.1:6385", "http://127.0.0.1:6385/v1"),
        ("http://127.0.0.1:6385/", "http://127.0.0.1:6385/v1"),
        ("http://127.0.0.1:6385/v1", "http://127.0.0.1:6385/v1"),
        ("http://127.0.0.1:6385/v1/", "http://127.0.0.1:6385/v1"),
        ("http://h:1/prefix", "http://h:1/prefix/v1"),
        ("http://h:1/prefix/v1?x=1", "http://h:1/prefix/v1"),
    ];
    for (input, want) in cases {
        assert_eq!(parse_base_url(input).unwrap().as_str(), want, "{input}");
    }
}

#[test]
fn bad_base_urls_are_config_errors() {
    for input in ["127.0.0.1:6385", "ftp://h/", "not a url", "file:///tmp/x"] {
        let err = parse_base_url(input).unwrap_err();
        assert!(matches!(err, ClientError::Config(_)), "{input}: {err:?}");
        assert!(err.to_string().contains("invalid --url"), "{err}");
    }
    let err = Client::new("https://h:1", "t").unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
    let err = Client::new("http://h:1", "bad\ntoken").unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}

#[test]
fn path_segments_are_percent_encoded() {
    let base = parse_base_url("http://h:1").unwrap();
    let url = api_url(&base, &["ihosts", "a b/c?", "kube_upgrade_kubelet"]).unwrap();
    assert_eq!(
        url.as_str(),
        "http://h:1/v1/ihosts/a%20b%2Fc%3F/kube_upgrade_kubelet"
    );
}

#[test]
fn api_errors_display_only_the_reason() {
    let e = ClientError::Api {
        status: 400,
        reason: "nope".into(),
    };
    assert_eq!(e.to_string(), "nope");
    assert_eq!(e.status(), Some(400));
    assert!(
        ClientError::Unauthorized
            .to_string()
            .contains("--token or KUP_TOKEN")
    );
}

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-request-per-connection HTTP server answering every request with `reply(&seen)`.
async fn serve(
    reply: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap().split(' ');
                let method = first.next().unwrap().to_string();
                let target = first.next().unwrap().to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                let req = Seen {
                    method,
                    target,
                    headers,
                    body,
                };
                let (status, body) = reply(&req);
                log.lock().unwrap().push(req);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
                sock.shutdown().await.ok();
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn upgrade_json(state: &str) -> serde_json::Value {
    json!({
        "id": 1, "uuid": "b5f7dada-2537-4416-9d2c-f9ca9fcd0e22",
        "from_version": "v1.16.1", "to_version": "v1.16.2", "state": state,
        "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null
    })
}

fn host_json() -> serde_json::Value {
    json!({
        "id": 2, "uuid": "u-2", "hostname": "controller-1", "personality": "controller",
        "subfunctions": "controller", "administrative": "unlocked", "operational": "enabled",
        "availability": "available", "task": null, "active_controller": false,
        "capabilities": {"Personality": "Controller-Standby"}, "roles": [], "peers": null,
        "install_state": null, "install_state_info": null,
        "created_at": "2020-02-20T16:08:48.854869+00:00", "updated_at": null
    })
}

#[tokio::test]
async fn sends_token_accept_and_the_documented_bodies() {
    let (url, seen) = serve(|req| match (req.method.as_str(), req.target.as_str()) {
        ("GET", "/v1/kube_upgrade") => (200, json!({"kube_upgrades": []}).to_string()),
        ("PATCH", "/v1/kube_upgrade") => (200, upgrade_json("downloading-images").to_string()),
        ("POST", "/v1/kube_upgrade") => (200, upgrade_json("upgrade-started").to_string()),
        ("DELETE", "/v1/kube_upgrade") => (204, String::new()),
        ("PATCH", "/v1/ihosts/controller-1") => (200, host_json().to_string()),
        ("POST", "/v1/ihosts/controller-1/kube_upgrade_kubelet") => (200, host_json().to_string()),
        ("GET", "/v1/health/kube-upgrade/relaxed") => (200, json!("All [OK]\n").to_string()),
        ("GET", "/v1/events?after=7&limit=3") => (
            200,
            json!({"events": [{
            "seq": 8, "at": "2020-02-20T16:08:48.854869+00:00", "kind": "state",
            "subject": "kube_upgrade", "message": "m"}]})
            .to_string(),
        ),
        _ => (404, ErrorBody::new("Client", "no such route").error_message),
    })
    .await;
    let c = Client::new(&url, " secret-token\n").unwrap();

    assert_eq!(c.kube_upgrade().await.unwrap(), None);
    let u = c
        .kube_upgrade_set_state("downloading-images")
        .await
        .unwrap();
    assert_eq!(u.state.as_str(), "downloading-images");
    let create = KubeUpgradeCreate {
        to_version: "v1.16.2".into(),
        force: true,
        alarm_ignore_list: vec!["100.101".into()],
    };
    c.kube_upgrade_start(&create).await.unwrap();
    c.kube_upgrade_delete().await.unwrap();
    let h = c.host_action("controller-1", "force-unlock").await.unwrap();
    assert_eq!(h.id, 2);
    c.kube_upgrade_kubelet("controller-1", false).await.unwrap();
    assert_eq!(c.health_kube_upgrade(true).await.unwrap(), "All [OK]\n");
    let events = c.events(7, 3).await.unwrap();
    assert_eq!(events[0].seq, 8);

    let seen = seen.lock().unwrap().clone();
    for req in &seen {
        assert_eq!(req.header("x-auth-token"), Some("secret-token"), "{req:?}");
        assert_eq!(req.header("accept"), Some("application/json"), "{req:?}");
    }
    let body = |i: usize| serde_json::from_str::<serde_json::Value>(&seen[i].body).unwrap();
    assert_eq!(
        body(1),
        json!([{"op": "replace", "path": "/state", "value": "downloading-images"}])
    );
    assert_eq!(
        body(2),
        json!({"to_version": "v1.16.2", "force": true, "alarm_ignore_list": ["100.101"]})
    );
    assert_eq!(seen[2].header("content-type"), Some("application/json"));
    assert_eq!(
        body(4),
        json!([{"op": "replace", "path": "/action", "value": "force-unlock"}])
    );
    assert_eq!(body(5), json!({"force": false}));
}

#[tokio::test]
async fn maps_refusals_401_and_bad_bodies() {
    let (url, _) = serve(|req| match req.target.as_str() {
        "/v1/kube_versions/v9.9.9" => (
            404,
            serde_json::to_string(&ErrorBody::new(
                "Client",
                "kubernetes version not found: v9.9.9",
            ))
            .unwrap(),
        ),
        "/v1/ihosts" => (401, "{}".into()),
        "/v1/alarms" => (200, "{\"alarms\": 3}".into()),
        _ => (500, "boom".into()),
    })
    .await;
    let c = Client::new(&url, "t").unwrap();
    match c.kube_version("v9.9.9").await.unwrap_err() {
        ClientError::Api { status, reason } => {
            assert_eq!(
                (status, reason.as_str()),
                (404, "kubernetes version not found: v9.9.9")
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.hosts().await.unwrap_err(),
        ClientError::Unauthorized
    ));
    let e = c.alarms().await.unwrap_err();
    assert!(matches!(e, ClientError::Decode { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("unexpected reply from {url}/v1/alarms: ")),
        "{e}"
    );
    assert_eq!(c.kube_versions().await.unwrap_err().to_string(), "boom");
}

#[tokio::test]
async fn an_unreachable_daemon_is_a_connect_error() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let e = Client::new(&url, "t")
        .unwrap()
        .kube_versions()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach kup at {url}: ")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}
