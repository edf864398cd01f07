use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn reply<'a>(status: u16, content_type: Option<&'a str>, body: &'a str) -> ErrorReply<'a> {
    ErrorReply {
        status,
        content_type,
        body: body.as_bytes(),
        length: None,
    }
}

#[test]
fn error_reason_reads_the_sysinv_faultstring() {
    let body =
        serde_json::to_string(&ErrorBody::new("Client", "Host controller-1 is locked.")).unwrap();
    assert_eq!(
        error_reason(&reply(400, Some("application/json"), &body)),
        "Host controller-1 is locked."
    );
    // `error_message` that is not the nested JSON form: the text itself.
    assert_eq!(
        error_reason(&reply(400, None, r#"{"error_message": "plain words"}"#)),
        "plain words"
    );
}

/// What is not kup's (or sysinv's) error body is described, and quoted only in part.
#[test]
fn error_reason_describes_any_other_body_and_quotes_200_characters_at_most() {
    assert_eq!(
        error_reason(&reply(
            502,
            Some("text/plain"),
            "  bad gateway\n from proxy\n"
        )),
        "the server answered HTTP 502 Bad Gateway (text/plain, 26 bytes), not kup's error body: \
         bad gateway from proxy"
    );
    assert_eq!(
        error_reason(&reply(404, None, "")),
        "the server answered HTTP 404 Not Found with an empty body"
    );
    assert_eq!(
        error_reason(&reply(599, Some("text/html"), " \n")),
        "the server answered HTTP 599 with an empty body"
    );
    let page = format!("<html><body>{}</body></html>", "x".repeat(2_000_000));
    let reason = error_reason(&ErrorReply {
        length: Some(2_000_036),
        ..reply(
            500,
            Some("text/html; charset=utf-8"),
            &page[..MAX_ERROR_BODY],
        )
    });
    assert_eq!(
        reason,
        format!(
            "the server answered HTTP 500 Internal Server Error (text/html; charset=utf-8, \
             2000036 bytes), not kup's error body: <html><body>{}…",
            "x".repeat(QUOTED_CHARS - 12)
        )
    );
    // JSON that is not the error body, and an error body whose reason is absurdly long.
    assert!(
        error_reason(&reply(500, Some("application/json"), r#"{"detail": "x"}"#))
            .ends_with(r#"(application/json, 15 bytes), not kup's error body: {"detail": "x"}"#)
    );
    let long = serde_json::to_string(&ErrorBody::new("Client", &"y".repeat(100_000))).unwrap();
    let reason = error_reason(&reply(400, Some("application/json"), &long));
    assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
    assert!(reason.ends_with("y…"));
}

#[test]
fn credentials_in_a_url_are_never_shown() {
    for (url, shown) in [
        ("http://user:pw@host:1/v1", "http://***@host:1/v1"),
        ("http://user@host", "http://***@host"),
        ("http://u:p@ss@host/x", "http://***@host/x"),
        ("http://u:p/w?#@host/x", "http://***@host/x"),
        ("user:pw@host:1", "***@host:1"),
        ("http://host:1/v1/ihosts/a", "http://host:1/v1/ihosts/a"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
    for input in [
        "user:pw@host:1",
        "ftp://user:pw@h/",
        "http://user:pw@h:99999",
    ] {
        let err = parse_base_url(input).unwrap_err().to_string();
        assert!(!err.contains("pw"), "{input}: {err}");
        assert!(err.contains("***@"), "{input}: {err}");
    }
    // Nothing listens on port 1: the connect error names the URL, without its password.
    let client = Client::new("https://user:pw@127.0.0.1:1", "t").unwrap();
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.kube_versions())
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("pw") && err.contains("https://***@127.0.0.1:1"),
        "{err}"
    );
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
    Client::new("https://h:1", "t").unwrap();
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

/// A one-request-per-connection HTTP server answering every request with `reply(&seen)`, as
/// JSON.
async fn serve(
    reply: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    serve_typed(move |seen| {
        let (status, body) = reply(seen);
        (status, "application/json".into(), body)
    })
    .await
}

/// As `serve`, with the content type of each reply.
async fn serve_typed(
    reply: impl Fn(&Seen) -> (u16, String, String) + Send + Sync + 'static,
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
                let (status, content_type, body) = reply(&req);
                log.lock().unwrap().push(req);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                // The client may stop reading a long error body: not an error here.
                let _ = sock.write_all(resp.as_bytes()).await;
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
    assert_eq!(
        c.kube_versions().await.unwrap_err().to_string(),
        "the server answered HTTP 500 Internal Server Error (application/json, 4 bytes), not \
         kup's error body: boom"
    );
}

/// A proxy's (or any other server's) 2 MB HTML error page becomes a short message that says
/// what came: the status, the content type, the size and the page's first 200 characters.
#[tokio::test]
async fn an_html_error_page_is_described_not_printed() {
    let page = format!(
        "<!DOCTYPE html>\n<html>\n  <body>{}</body></html>",
        "Bad gateway. ".repeat(160_000)
    );
    let size = page.len();
    assert!(size > 2_000_000);
    let (url, _) = serve_typed(move |_| (502, "text/html".into(), page.clone())).await;
    let e = Client::new(&url, "t").unwrap().hosts().await.unwrap_err();
    assert_eq!(e.status(), Some(502));
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "the server answered HTTP 502 Bad Gateway (text/html, {size} bytes), not kup's \
             error body: <!DOCTYPE html> <html> <body>Bad gateway. Bad gateway."
        )),
        "{message}"
    );
    assert!(message.ends_with('…'), "{message}");
    assert!(message.chars().count() < 300, "{} chars", message.len());
}

/// A 2xx reply that is not what the endpoint returns is described briefly too (serde would
/// quote a whole string it did not expect).
#[tokio::test]
async fn an_unexpected_reply_is_quoted_briefly_without_credentials() {
    let huge = serde_json::to_string(&"z".repeat(1_000_000)).unwrap();
    let (url, _) = serve(move |_| (200, huge.clone())).await;
    let with_credentials = url.replace("http://", "http://user:secret-pw@");
    let e = Client::new(&with_credentials, "t")
        .unwrap()
        .hosts()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Decode { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.chars().count() < 300, "{} chars", message.len());
    assert!(!message.contains("secret-pw"), "{message}");
    assert!(
        message.starts_with(&format!(
            "unexpected reply from {}/v1/ihosts: ",
            url.replace("http://", "http://***@")
        )),
        "{message}"
    );
}

/// Every name is sent exactly as given: the characters the URL parser would drop (tab, CR,
/// LF), or read as structure (`/`, `?`, `#`, `%`, `\\`), arrive percent-encoded, and a name
/// no URL path can carry as itself is refused before anything is sent.
#[tokio::test]
async fn names_are_sent_exactly_as_given() {
    let (url, seen) = serve(|req| {
        (
            404,
            serde_json::to_string(&ErrorBody::new("Client", &format!("no {}", req.target)))
                .unwrap(),
        )
    })
    .await;
    let c = Client::new(&format!("{url}/prefix/"), "t").unwrap();
    for (name, target) in [
        ("worker-0\t", "/prefix/v1/ihosts/worker-0%09"),
        ("worker-0\r\n", "/prefix/v1/ihosts/worker-0%0D%0A"),
        (
            "worker-9\nError: all good",
            "/prefix/v1/ihosts/worker-9%0AError%3A%20all%20good",
        ),
        ("a/b?c#d", "/prefix/v1/ihosts/a%2Fb%3Fc%23d"),
        ("%2e%2e", "/prefix/v1/ihosts/%252e%252e"),
        ("..\\x", "/prefix/v1/ihosts/..%5Cx"),
        ("...", "/prefix/v1/ihosts/..."),
        ("wörker", "/prefix/v1/ihosts/w%C3%B6rker"),
    ] {
        let e = c.host_action(name, "lock").await.unwrap_err();
        assert_eq!(e.to_string(), format!("no {target}"), "{name:?}");
    }
    let before = seen.lock().unwrap().len();
    for name in ["", ".", ".."] {
        for e in [
            c.host_action(name, "lock").await.unwrap_err(),
            c.kube_version(name).await.unwrap_err(),
            c.patch_apply(name).await.unwrap_err(),
        ] {
            assert!(matches!(e, ClientError::Config(_)), "{name:?}: {e:?}");
            assert!(e.to_string().contains("is not a name"), "{e}");
        }
    }
    assert_eq!(seen.lock().unwrap().len(), before, "nothing was sent");
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
    let e = Client::new(&url.replace("http://", "http://user:pw@"), "t")
        .unwrap()
        .kube_versions()
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach kup at {}: ",
            url.replace("http://", "http://***@")
        )),
        "{msg}"
    );
    assert!(!msg.contains("pw"), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

/// An https:// URL on a server that speaks plain HTTP: the handshake fails, and the error
/// says what is likely wrong.
#[tokio::test]
async fn https_to_a_plain_http_server_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 1024];
        let _ = s.read(&mut hello).await;
        let _ = s
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
    });
    let err = Client::new(&format!("https://{addr}"), "t")
        .unwrap()
        .kube_versions()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach kup at https://{addr}: the TLS handshake failed: received corrupt message of type InvalidContentType (is the daemon serving plain http? then use an http:// URL)"
        )
    );
}
