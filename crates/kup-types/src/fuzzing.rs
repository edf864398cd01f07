//! The bodies of the cargo-fuzz targets over this crate (`fuzz/fuzz_targets/`). They live
//! here, not in the fuzz crate, so that an ordinary test replays the saved corpus through the
//! very same code on stable Rust (`crates/kup-types/tests/fuzz_corpus.rs`).

use crate::{KubeVersion, VersionMeta};

/// The `version_parser` target: the input as a version string (`KubeVersion::parse`), as the
/// serde form (a JSON value, alone and inside a catalog entry), and, split at its first
/// newline, as two versions for the skew arithmetic. Panics only if a promise breaks: a
/// version has one spelling besides its `v`/`V` prefix, it displays as what parses back to
/// it, the serde form agrees with the parser, every refusal names the expected form.
pub fn version_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = check_text(&text);

    // The same string as a JSON string: serde must agree with the parser.
    let quoted = serde_json::to_string(&*text).expect("a string serializes");
    match (serde_json::from_str::<KubeVersion>(&quoted), parsed) {
        (Ok(a), Some(b)) => assert_eq!(a, b, "{text:?}"),
        (Err(_), None) => {}
        (a, b) => panic!("serde and the parser disagree on {text:?}: {a:?} vs {b:?}"),
    }

    // The raw bytes as any JSON value: only a string that parses may become a version.
    if let Ok(v) = serde_json::from_slice::<KubeVersion>(data) {
        let s: String = serde_json::from_slice(data).expect("a version deserializes from a string");
        assert_eq!(KubeVersion::parse(&s), Ok(v));
        round_trip(v);
    }
    if let Ok(meta) = serde_json::from_slice::<VersionMeta>(data) {
        let again: VersionMeta =
            serde_json::from_str(&serde_json::to_string(&meta).expect("serializes"))
                .expect("what kup writes, it reads back");
        assert_eq!(again, meta);
    }

    // Two versions: the skew arithmetic on any pair.
    if let Some((a, b)) = text.split_once('\n')
        && let (Some(a), Some(b)) = (check_text(a), check_text(b))
    {
        assert_eq!(a.minor_skew(&b), -b.minor_skew(&a));
        if (a.major, a.minor) == (b.major, b.minor) {
            assert_eq!(a.minor_skew(&b), 0);
        }
        assert_eq!(
            a.cmp(&b),
            (a.major, a.minor, a.patch).cmp(&(b.major, b.minor, b.patch))
        );
        // A kubelet never runs under an API server of an older minor (patch releases do not
        // count), nor one of another major version.
        if b.kubelet_runs_under(a) {
            assert!(a.major == b.major && a.minor >= b.minor, "{b} under {a}");
        }
    }
}

/// Parses `text` and checks the promises of the result.
fn check_text(text: &str) -> Option<KubeVersion> {
    match KubeVersion::parse(text) {
        Ok(v) => {
            round_trip(v);
            // One spelling per version: the digits are exactly the canonical ones.
            let body = text
                .strip_prefix('v')
                .or_else(|| text.strip_prefix('V'))
                .unwrap_or(text);
            assert_eq!(body, &v.to_string()[1..], "{text:?} is a second spelling");
            Some(v)
        }
        Err(e) => {
            assert_eq!(e.input, text);
            let reason = e.to_string();
            assert!(reason.contains("expected vMAJOR.MINOR.PATCH"), "{reason}");
            None
        }
    }
}

fn round_trip(v: KubeVersion) {
    let shown = v.to_string();
    assert!(shown.starts_with('v'), "{shown}");
    assert_eq!(KubeVersion::parse(&shown), Ok(v));
    let json = serde_json::to_string(&v).expect("a version serializes");
    assert_eq!(json, format!("\"{shown}\""));
    assert_eq!(serde_json::from_str::<KubeVersion>(&json).ok(), Some(v));
}
