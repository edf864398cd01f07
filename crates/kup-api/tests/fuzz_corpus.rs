//! Replays the saved corpus of the `request_bodies` fuzz target (and any saved crash inputs)
//! through its body, so CI exercises it on stable Rust without cargo-fuzz.
//!
//! The corpus is generated, not hand-written: `cargo test -p kup-api --test fuzz_corpus --
//! --ignored` rewrites `fuzz/corpus/request_bodies/` from the served OpenAPI document's
//! examples, the bodies the test suite and the client send, and mutations of them,
//! deterministically. Each input is one byte choosing the request (its index in
//! `kup_api::fuzzing::REQUESTS`), then the body or query string.

#[path = "../../../fuzz/replay.rs"]
mod replay;

use kup_api::fuzzing::{REQUESTS, request_bodies};
use kup_types::{HostUpgradeRequest, KubeUpgradeCreate, PatchOp, StrategyActionRequest};
use replay::{Rng, assert_current, mutations, replay, write_corpus};
use serde_json::{Value, json};

const TARGET: &str = "request_bodies";

fn which(request: &str) -> usize {
    REQUESTS
        .iter()
        .position(|r| *r == request)
        .unwrap_or_else(|| panic!("{request} is not a fuzzed request"))
}

#[test]
fn replays_the_saved_corpus_without_panicking() {
    let corpus = replay(TARGET, 200, request_bodies);
    // Every request has inputs of its own, so the fuzzer starts from each of them.
    for (i, request) in REQUESTS.iter().enumerate() {
        let n = corpus
            .iter()
            .filter(|(_, d)| {
                d.first()
                    .is_some_and(|b| usize::from(*b) % REQUESTS.len() == i)
            })
            .count();
        assert!(n >= 10, "only {n} inputs for {request}");
    }
}

/// The target reads every body the served document declares (bar the bundle upload, the
/// `bundle_reader` target's) and every query: a new one cannot be left out unnoticed.
#[test]
fn every_body_and_query_of_the_document_is_fuzzed() {
    let doc = serde_json::to_value(kup_api::openapi()).unwrap();
    let mut read = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let content = &op["requestBody"]["content"];
            let json_body = content.get("application/json").is_some();
            let binary = content.get("application/octet-stream").is_some();
            let query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            if json_body || query {
                read.push(format!("{} {path}", method.to_uppercase()));
            } else {
                assert!(
                    binary || op.get("requestBody").is_none(),
                    "{method} {path}: a body of another kind"
                );
            }
        }
    }
    read.sort();
    let mut fuzzed: Vec<String> = REQUESTS.iter().map(|r| r.to_string()).collect();
    fuzzed.sort();
    assert_eq!(read, fuzzed);
}

/// The request bodies and query strings of the served document's examples.
fn document_examples() -> Vec<(usize, Vec<u8>)> {
    let doc = serde_json::to_value(kup_api::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let request = format!("{} {path}", method.to_uppercase());
            let Some(i) = REQUESTS.iter().position(|r| *r == request) else {
                continue;
            };
            let media = &op["requestBody"]["content"]["application/json"];
            if let Some(example) = media.get("example") {
                out.push((i, example.to_string().into_bytes()));
            }
            // An object of its schema's property examples.
            let schema = match media["schema"]["$ref"].as_str() {
                Some(r) => &schemas[r.rsplit('/').next().unwrap()],
                None => &media["schema"],
            };
            if let Some(props) = schema["properties"].as_object() {
                let object: serde_json::Map<String, Value> = props
                    .iter()
                    .filter_map(|(k, p)| Some((k.clone(), p.get("example")?.clone())))
                    .collect();
                out.push((i, Value::Object(object).to_string().into_bytes()));
            }
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| {
                    let example = p.get("example").or(p["schema"].get("example"))?;
                    let value = example
                        .as_str()
                        .map_or_else(|| example.to_string(), str::to_string);
                    Some(format!("{}={value}", p["name"].as_str()?))
                })
                .collect();
            if !query.is_empty() {
                out.push((i, query.join("&").into_bytes()));
            }
        }
    }
    out
}

fn ops(pairs: &[(&str, &str)]) -> Value {
    let ops: Vec<PatchOp> = pairs
        .iter()
        .map(|(path, value)| PatchOp {
            op: "replace".into(),
            path: (*path).into(),
            value: Some(json!(value)),
        })
        .collect();
    serde_json::to_value(ops).unwrap()
}

/// The bodies the test suite (`tests/http.rs`) and the client (`kup-client`) send, valid and
/// invalid.
fn suite_bodies() -> Vec<(&'static str, Value)> {
    let start = |v: Value| ("POST /v1/kube_upgrade", v);
    let upgrade = |v: Value| ("PATCH /v1/kube_upgrade", v);
    let host = |v: Value| ("PATCH /v1/ihosts/{host}", v);
    let row = |v: Value| ("PATCH /v1/kube_host_upgrades/{id}", v);
    let strategy = |v: Value| ("POST /v1/kube_upgrade_strategy", v);
    let action = |v: Value| ("POST /v1/kube_upgrade_strategy/actions", v);
    let mut out = vec![
        start(
            serde_json::to_value(KubeUpgradeCreate {
                to_version: "v1.16.2".into(),
                force: true,
                alarm_ignore_list: vec!["100.101".into(), "200.001".into()],
            })
            .unwrap(),
        ),
        start(json!({"to_version": "v1.16.2", "alarm_ignore_list": "100.101,200.001"})),
        start(json!({"to_version": "v1.16.2", "alarm_ignore_list": "['100.101', '200.001']"})),
        start(json!({"to_version": "v1.16.2", "alarm_ignore_list": null})),
        start(json!({"to_version": 5})),
        start(json!({"force": true})),
        start(json!({"to_version": "v1.16.2", "force": "yes"})),
        start(json!({"to_version": "v1.42.2.unknown"})),
        start(json!({"to_version": "v1.16.2", "colour": "red"})),
        start(json!([1, 2])),
        upgrade(json!({"path": "/state"})),
        upgrade(json!([{"op": "replace", "path": "/uuid", "value": "x"}])),
        upgrade(json!([{"op": "replace", "path": "/state", "value": 3}])),
        upgrade(json!([{"op": "move", "path": "/state", "value": "x"}])),
        upgrade(json!([{"op": "remove", "path": "/state"}])),
        upgrade(json!([{"op": "replace", "path": "state", "value": "x"}])),
        upgrade(json!([{"op": "replace", "path": "/", "value": "x"}])),
        upgrade(json!([{"op": "replace", "path": "/state/", "value": "x"}])),
        upgrade(json!([])),
        host(json!([{"op": "replace", "path": "/hostname", "value": "x"}])),
        host(json!([{"op": "replace", "path": "/action", "value": "reboot"}])),
        row(json!([{"op": "replace", "path": "/status", "value": "failed"}])),
        row(json!([{"op": "replace", "path": "/status", "value": "upgraded-kubelet"}])),
        strategy(json!({"to-version": "v1.16.2", "controller-apply-type": "parallel"})),
        strategy(json!({"to_version": "v1.16.2", "max_parallel_worker_hosts": 0})),
        strategy(json!({"to_version": "v1.16.2", "max_parallel_worker_hosts": 1001})),
        strategy(json!({
            "to-version": "1.16.2",
            "controller-apply-type": "serial",
            "storage-apply-type": "ignore",
            "worker-apply-type": "parallel",
            "max-parallel-worker-hosts": 5,
            "default-instance-action": "stop-start",
            "alarm-restrictions": "relaxed"
        })),
        strategy(
            json!({"to_version": "v1.16.2", "mode": "offline", "partial_ok": true,
            "worker_apply_type": "serial", "alarm_restrictions": "permissive"}),
        ),
        strategy(json!({"to_version": "v1.16.2", "default_instance_action": "reboot"})),
        strategy(json!({"to_version": "v1.16.2", "worker_apply_type": "sideways"})),
        action(
            serde_json::to_value(StrategyActionRequest {
                action: "abort".into(),
                rollback: true,
            })
            .unwrap(),
        ),
        action(json!({"action": "apply-all"})),
        action(json!({"action": "apply-stage"})),
        action(json!({"action": "abort-stage"})),
        action(json!({"action": "apply-all", "stage-id": 1})),
    ];
    for state in [
        "downloading-images",
        "upgrading-networking",
        "upgrade-complete",
        "upgrade-aborting",
        "downloading-images-failed",
        "upgrading-networking-failed",
        "upgrading-first-master-failed",
        "bogus",
    ] {
        out.push(upgrade(ops(&[("/state", state)])));
    }
    for state in ["cordon-started", "uncordon-started"] {
        out.push(upgrade(ops(&[
            ("/hostname", "controller-0"),
            ("/state", state),
        ])));
        out.push(upgrade(ops(&[("/state", state)])));
    }
    for a in [
        "lock",
        "force-lock",
        "unlock",
        "force-unlock",
        "swact",
        "force-swact",
    ] {
        out.push(host(ops(&[("/action", a)])));
    }
    for force in [false, true] {
        let body = serde_json::to_value(HostUpgradeRequest { force }).unwrap();
        out.push((
            "POST /v1/ihosts/{host}/kube_upgrade_control_plane",
            body.clone(),
        ));
        out.push(("POST /v1/ihosts/{host}/kube_upgrade_kubelet", body));
    }
    out.push((
        "POST /v1/ihosts/{host}/kube_upgrade_kubelet",
        json!({"force": 1}),
    ));
    out
}

/// Query strings, valid and at every bound.
const QUERIES: &[(&str, &str)] = &[
    ("GET /v1/upgrade/plan", ""),
    ("GET /v1/upgrade/plan", "to=v1.16.2"),
    ("GET /v1/upgrade/plan", "max_parallel_worker_hosts=0"),
    (
        "GET /v1/upgrade/plan",
        "max_parallel_worker_hosts=4294967295",
    ),
    (
        "GET /v1/upgrade/plan",
        "max_parallel_worker_hosts=4294967296",
    ),
    ("GET /v1/upgrade/plan", "max_parallel_worker_hosts=-1"),
    ("GET /v1/upgrade/plan", "max_parallel_worker_hosts=abc"),
    (
        "GET /v1/upgrade/plan",
        "max_parallel_worker_hosts=1&max_parallel_worker_hosts=2",
    ),
    ("GET /v1/upgrade/plan", "min_free_disk_gib=1e3"),
    ("GET /v1/upgrade/plan", "to=&to=v1.16.2"),
    ("GET /v1/upgrade/plan", "to=%ff%fe"),
    ("GET /v1/upgrade/plan", "to=%zz"),
    ("GET /v1/upgrade/plan", "colour=red"),
    ("GET /v1/events", ""),
    ("GET /v1/events", "after=abc"),
    ("GET /v1/events", "after=-1"),
    ("GET /v1/events", "after=9223372036854775807"),
    ("GET /v1/events", "after=9223372036854775808"),
    ("GET /v1/events", "after=-9223372036854775808"),
    ("GET /v1/events", "limit=0"),
    ("GET /v1/events", "limit=1"),
    ("GET /v1/events", "limit=10001"),
    ("GET /v1/events", "limit=4294967295"),
    ("GET /v1/events", "wait=300"),
    ("GET /v1/events", "wait=301"),
    ("GET /v1/events", "wait=4294967296"),
    ("GET /v1/events", "after=0&limit=100&wait=0"),
    ("GET /v1/events", "after=+1"),
    ("GET /v1/events", "after=1.5"),
    ("GET /v1/events", "&&&="),
    ("GET /v1/events", "%"),
    ("GET /v1/events", "subject=worker-0"),
    ("GET /v1/events", "subject=&subject=worker-0"),
    ("GET /v1/dashboard", ""),
    ("GET /v1/dashboard", "hosts="),
    ("GET /v1/dashboard", "hosts=worker-0"),
    ("GET /v1/dashboard", "hosts=worker-0,,%20worker-1%20,"),
    ("GET /v1/dashboard", "hosts=%2C%2C%2C"),
    ("GET /v1/dashboard", "hosts=a&hosts=b"),
    ("GET /v1/dashboard", "hosts=%ff%fe"),
    ("GET /v1/dashboard", "hosts=%zz"),
    ("GET /v1/dashboard", "colour=red"),
];

/// Replacements for one value of a body: every JSON type, and the edges of strings and numbers.
fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(4294967296_u64),
        json!(1.5),
        json!(""),
        json!("x".repeat(300)),
        json!("\u{0}\n\u{202e}"),
        json!("v1.16.2"),
        json!("/state"),
        json!([]),
        json!({}),
    ]
}

/// The places of a value's leaves and containers, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                pointers(item, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Structure-aware mutations of a JSON body: a value replaced, a key added or dropped, the
/// whole wrapped.
fn json_mutations(v: &Value, rng: &mut Rng, count: usize) -> Vec<Value> {
    let mut places = Vec::new();
    pointers(v, String::new(), &mut places);
    let choices = replacements();
    let mut out = Vec::new();
    for _ in 0..count {
        let mut m = v.clone();
        let place = &places[rng.below(places.len())];
        match rng.below(4) {
            0 | 1 => *m.pointer_mut(place).unwrap() = choices[rng.below(choices.len())].clone(),
            2 => {
                if let Some(obj) = m.pointer_mut(place).and_then(Value::as_object_mut) {
                    if let Some(k) = obj.keys().next().cloned() {
                        obj.remove(&k);
                    } else {
                        obj.insert("colour".into(), json!("red"));
                    }
                } else {
                    m = json!([m]);
                }
            }
            _ => m = json!({ "body": m }),
        }
        out.push(m);
    }
    out
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(usize, Vec<u8>)> = document_examples();
    let mut json_seeds: Vec<(usize, Value)> = seeds
        .iter()
        .filter_map(|(i, b)| Some((*i, serde_json::from_slice(b).ok()?)))
        .collect();
    for (request, body) in suite_bodies() {
        let i = which(request);
        seeds.push((i, body.to_string().into_bytes()));
        json_seeds.push((i, body));
    }
    for (request, query) in QUERIES {
        seeds.push((which(request), query.as_bytes().to_vec()));
    }
    // What JSON readers must refuse without falling over, for every body.
    let raw: &[&[u8]] = &[
        b"",
        b" ",
        b"null",
        b"{",
        b"[",
        b"\"",
        b"[{\"op\": \"replace\", \"path\": \"/state\", \"value\": \"x\"}",
        b"{\"to_version\": \"v1.16.2\"} trailing",
        b"{\"to_version\": \"v1.16.2\", \"to_version\": \"v1.16.1\"}",
        b"{\"to_version\": \"\\ud800\"}",
        b"{\"to_version\": \"v1.16.2\\u0000\"}",
        b"{\"max_parallel_worker_hosts\": 1e400, \"to_version\": \"v1.16.2\"}",
        b"{\"to_version\": \"v1.16.2\"}\xff",
        b"\xef\xbb\xbf{\"to_version\": \"v1.16.2\"}",
    ];
    let nesting = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for i in 0..REQUESTS.len() {
        for r in raw {
            seeds.push((i, r.to_vec()));
        }
        seeds.push((i, nesting.clone().into_bytes()));
    }

    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |kind: &str, i: usize, body: &[u8]| {
        let mut data = vec![i as u8];
        data.extend_from_slice(body);
        if !out.iter().any(|(_, d)| *d == data) {
            out.push((format!("{i}-{kind}-{:04}", out.len()), data));
        }
    };
    for (i, body) in &seeds {
        add("seed", *i, body);
    }
    let mut rng = Rng(0x6b75_7062);
    for (i, body) in &json_seeds {
        for m in json_mutations(body, &mut rng, 4) {
            add("json", *i, m.to_string().as_bytes());
        }
    }
    for (i, body) in &seeds {
        for m in mutations(body, &mut rng, 1) {
            add("bytes", *i, &m);
        }
    }
    out
}

/// Pieces a mutation inserts: what the format is made of.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e400",
    b"4294967296",
    b"\\u0000",
    b"\\ud800",
    b"\"/state\"",
    b"\"/hostname\"",
    b"\"/action\"",
    b"\"/status\"",
    b"\"op\"",
    b"\"replace\"",
    b"\"remove\"",
    b"\"value\"",
    b"\"to_version\"",
    b"\"v1.16.2\"",
    b"\"cordon-started\"",
    b"\"-failed\"",
    b"\"apply-all\"",
    b"\"abort\"",
    b"\"rollback\"",
    b"\"max_parallel_worker_hosts\"",
    b"&",
    b"=",
    b"%",
    b"%ff",
    b"after=",
    b"limit=",
    b"wait=",
    b"to=",
    b"max_parallel_worker_hosts=",
];

#[test]
#[ignore = "a stable stand-in for `cargo fuzz run` (no coverage feedback); set KUP_FUZZ_ITERATIONS and KUP_FUZZ_SEED"]
fn explore_mutations_of_the_corpus() {
    let (iterations, seed) = replay::explore_settings();
    let crashes = replay::explore(TARGET, request_bodies, TOKENS, iterations, seed);
    assert_eq!(
        crashes, 0,
        "inputs that panicked are in fuzz/artifacts/{TARGET}/"
    );
}

#[test]
#[ignore = "rewrites fuzz/corpus/request_bodies; run with --ignored after changing the generator"]
fn regenerate_the_corpus() {
    write_corpus(TARGET, &corpus());
}

#[test]
fn the_saved_corpus_is_current() {
    assert_current(TARGET, &corpus());
}
