//! A platform patch's networking manifests (a CNI's, say), applied through the API as
//! `kubectl apply --server-side` would: each YAML document to the resource its kind names
//! (found by discovery), by server-side apply with kup's field manager, taking the fields over
//! from whoever held them before (the manifest is the patch's intent).

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kup_types::PatchFile;

use crate::payload::PatchFiles;

/// kup's field manager in server-side apply.
const FIELD_MANAGER: &str = "kup";

/// The documents of a manifest file, as JSON objects; empty documents are skipped.
pub fn documents(file: &PatchFile, bytes: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("{} of {}: not UTF-8 text", file.path, file.patch))?;
    let docs: Vec<Option<serde_json::Value>> =
        serde_saphyr::from_str_multiple(text).map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            format!("{} of {}: not YAML: {first}", file.path, file.patch)
        })?;
    docs.into_iter()
        .flatten()
        .filter(|d| !d.is_null())
        .enumerate()
        .map(|(i, d)| {
            let ok = ["apiVersion", "kind"].iter().all(|k| d[k].is_string())
                && d["metadata"]["name"].is_string();
            if ok {
                Ok(d)
            } else {
                Err(format!(
                    "{} of {}: document {} has no apiVersion, kind and metadata.name",
                    file.path,
                    file.patch,
                    i + 1
                ))
            }
        })
        .collect()
}

/// Applies every document of every file, in order; the first failure stops it, naming the
/// object.
pub(crate) async fn apply(
    client: &kube::Client,
    files: &PatchFiles,
    manifests: &[PatchFile],
) -> Result<usize, String> {
    let mut applied = 0;
    for file in manifests {
        let bytes = files.read(file).await?;
        for doc in documents(file, &bytes)? {
            apply_one(client, &doc).await?;
            applied += 1;
        }
    }
    Ok(applied)
}

async fn apply_one(client: &kube::Client, doc: &serde_json::Value) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let what = format!("{kind} {name}");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{what}: the API server does not serve {api_version} {kind}: {e}"))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(doc),
    )
    .await
    .map(drop)
    .map_err(|e| format!("cannot apply {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> PatchFile {
        PatchFile {
            patch: "P".into(),
            path: "m/cni.yaml".into(),
        }
    }

    #[test]
    fn a_manifest_file_is_its_documents_and_a_bad_one_says_why() {
        let docs = documents(
            &file(),
            b"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: a}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["metadata"]["namespace"], "a");
        let bad: [(&[u8], &str); 3] = [
            (b"\xff", "m/cni.yaml of P: not UTF-8 text"),
            (b"kind: [", "m/cni.yaml of P: not YAML"),
            (
                b"apiVersion: v1\nkind: ConfigMap\n",
                "m/cni.yaml of P: document 1 has no apiVersion, kind and metadata.name",
            ),
        ];
        for (bytes, want) in bad {
            let e = documents(&file(), bytes).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
