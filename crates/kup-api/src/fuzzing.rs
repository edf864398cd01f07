//! The body of the `request_bodies` fuzz target (`fuzz/fuzz_targets/request_bodies.rs`). It
//! lives here, not in the fuzz crate, so that it calls the handlers' own readers and checks
//! (private to this crate) and an ordinary test replays the saved corpus through the very same
//! code on stable Rust (`crates/kup-api/tests/fuzz_corpus.rs`).

use axum::http::Uri;
use kup_core::{Command, Refusal};
use kup_engine::EngineError;
use kup_types::{
    HostUpgradeRequest, KubeUpgradeCreate, KubeVersion, PatchOp, StrategyActionRequest,
    StrategyCreate,
};

use crate::dashboard::DashboardQuery;
use crate::error::ApiError;
use crate::extract::{json_body, optional_json, query};
use crate::routes::{
    EventQuery, PlanQuery, check_host_status, host_action, patch_value, strategy_command,
    upgrade_patch_command,
};

/// The requests whose body (or query) the API reads, in the order the first byte of an input
/// chooses them (modulo their number). Every body the API accepts but a patch bundle's, which
/// the `bundle_reader` target covers.
pub const REQUESTS: [&str; 11] = [
    "POST /v1/kube_upgrade",
    "PATCH /v1/kube_upgrade",
    "PATCH /v1/kube_host_upgrades/{id}",
    "PATCH /v1/ihosts/{host}",
    "POST /v1/ihosts/{host}/kube_upgrade_control_plane",
    "POST /v1/ihosts/{host}/kube_upgrade_kubelet",
    "POST /v1/kube_upgrade_strategy",
    "POST /v1/kube_upgrade_strategy/actions",
    "GET /v1/upgrade/plan",
    "GET /v1/events",
    "GET /v1/dashboard",
];

/// The `request_bodies` target: the first byte chooses a request of [`REQUESTS`], the rest is
/// its JSON body (or its query string), read by the handler's own extractor and checked as the
/// handler checks it before the engine sees it. Panics only if a promise breaks: bad input is
/// refused with a client error (4xx) and a reason, never a panic or a 5xx.
pub fn request_bodies(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let which = usize::from(first) % REQUESTS.len();
    let outcome = match which {
        0 => json_body::<KubeUpgradeCreate>(body).and_then(|b| {
            // The core's first look at it (`kup_core::machine::start`).
            KubeVersion::parse(&b.to_version)
                .map(drop)
                .map_err(|e| refused(e.into()))
        }),
        1 => json_body::<Vec<PatchOp>>(body).and_then(|ops| {
            let cmd = upgrade_patch_command(&ops)?;
            if let Command::Cordon { host } | Command::Uncordon { host } = &cmd {
                // The host is the one the body named.
                assert!(ops.iter().any(|op| op.path == "/hostname"
                    && op.value.as_ref().and_then(|v| v.as_str()) == Some(host.as_str())));
            }
            let _ = cmd.describe();
            Ok(())
        }),
        2 => json_body::<Vec<PatchOp>>(body)
            .and_then(|ops| check_host_status(&patch_value(&ops, "/status")?)),
        3 => json_body::<Vec<PatchOp>>(body).and_then(|ops| {
            let cmd = host_action(&patch_value(&ops, "/action")?, "worker-0".into())?;
            assert_eq!(cmd.host(), Some("worker-0"));
            Ok(())
        }),
        4 | 5 => optional_json::<HostUpgradeRequest>(body).map(drop),
        6 => json_body::<StrategyCreate>(body).and_then(|req| {
            let to = kup_core::strategy::validate(&req).map_err(refused)?;
            assert_eq!(KubeVersion::parse(&req.to_version), Ok(to));
            Ok(())
        }),
        7 => json_body::<StrategyActionRequest>(body)
            .and_then(|req| strategy_command(&req).map(drop)),
        8 => uri("/v1/upgrade/plan?", body)
            .map_or(Ok(()), |u| query::<PlanQuery>(&u)?.checked().map(drop)),
        9 => uri("/v1/events?", body).map_or(Ok(()), |u| {
            let (after, limit, wait) = query::<EventQuery>(&u)?.checked()?;
            assert!(after >= 0 && (1..=10_000).contains(&limit) && wait.as_secs() <= 300);
            Ok(())
        }),
        _ => uri("/v1/dashboard?", body).map_or(Ok(()), |u| {
            let names = query::<DashboardQuery>(&u)?.checked()?;
            assert!(
                names.is_none_or(|n| n.len() <= crate::dashboard::MAX_NAMED_HOSTS
                    && n.iter().all(|h| !h.is_empty() && !h.contains(',')))
            );
            Ok(())
        }),
    };
    if let Err(e) = outcome {
        assert!(
            e.status.is_client_error(),
            "{}: {} {}",
            REQUESTS[which],
            e.status,
            e.reason
        );
        assert!(
            !e.reason.trim().is_empty(),
            "{}: no reason",
            REQUESTS[which]
        );
    }
}

/// A refusal of the core, as the API answers it.
fn refused(r: Refusal) -> ApiError {
    ApiError::from(EngineError::Refused(r))
}

/// The request target with `query` after `path`, if it is one (hyper refuses what is not
/// before any handler sees it).
fn uri(path: &str, query: &[u8]) -> Option<Uri> {
    Uri::try_from([path.as_bytes(), query].concat()).ok()
}
