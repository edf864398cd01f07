#!/usr/bin/env bash
# Rebuilds the seed's three patch bundles from src/, signed with the demo key.
# The demo key is kup-patch's published test key: its secret is in this directory on purpose,
# so only `kup demo`, the tests and a daemon started with --trusted-key demo-key.pub trust it.
# Builds are deterministic: a rebuild gives the committed bytes (a test checks this).
set -euo pipefail
cd "$(dirname "$0")"
kup=${KUP:-../../target/release/kup}
for id in K8S-1.16.2-PLATFORM K8S-1.16.2-KUBEADM K8S-1.16.2-KUBELET; do
  "$kup" sw-patch build "src/$id" --key demo-key.secret -o "$id.patch"
done
