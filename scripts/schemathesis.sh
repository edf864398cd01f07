#!/usr/bin/env bash
# Schema-based fuzzing of the REST API: schemathesis (from PyPI) reads the OpenAPI document a
# real `kup serve` serves and sends every operation generated requests, valid and invalid,
# with the admin token. It fails on any 5xx answer and on any answer that breaks the
# document's own schema (an undeclared status, a body of the wrong shape). Run by hand (not in
# .ci/run: it needs PyPI and minutes); docs/fuzzing.md has the figures of the last run.
#   scripts/schemathesis.sh [EXAMPLES_PER_OPERATION] [SEED]
# Environment: KUP_ST_VENV (the virtualenv, default /tmp/kup-schemathesis-venv),
# CARGO_TARGET_DIR (where the kup binary is built), KUP_ST_CHECKS (the checks, comma-separated),
# KUP_ST_ARGS (more schemathesis options).
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-500}"
seed="${2:-20261201}"
# Pinned: generation and check names change between releases, and a fixed seed only
# reproduces a run with the same release.
version="4.32.5"
venv="${KUP_ST_VENV:-/tmp/kup-schemathesis-venv}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version\$"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

cargo build -q --locked -p kup
kup="${CARGO_TARGET_DIR:-target}/debug/kup"

work="$(mktemp -d)"
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

token="schemathesis-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf 'admin %s\n' "$token" >"$work/tokens"
# Port 0: the daemon picks a free port and writes it to DIR/listen-address. The demo key lets
# uploads of a genuine bundle through; schemathesis's own bytes are refused as they should be.
"$kup" serve --data-dir "$work/data" --listen 127.0.0.1:0 --time-scale 0 \
  --token-file "$work/tokens" --trusted-key examples/patches/demo-key.pub \
  2>"$work/serve.log" &
daemon=$!
for _ in $(seq 100); do
  [ -s "$work/data/listen-address" ] && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
addr="$(cat "$work/data/listen-address")"

# The example patches, so that apply, remove, show and delete reach the engine.
for p in PLATFORM KUBEADM KUBELET; do
  curl -fsS -o /dev/null -H "X-Auth-Token: $token" -H 'Content-Type: application/octet-stream' \
    --data-binary "@examples/patches/K8S-1.16.2-$p.patch" "http://$addr/v1/patches"
done

# Checks: no 5xx; every answer's status, content type and body as the document declares
# them; schema-invalid requests refused (4xx). Not `positive_data_acceptance`: a valid request
# that the upgrade's state refuses is a 400 by design (sysinv's). The stateful phase follows
# the links schemathesis infers between operations (one's answer naming another's parameter).
status=0
# shellcheck disable=SC2086
SCHEMATHESIS_HOOKS=scripts/schemathesis_hooks.py \
  "$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "http://$addr/v1/openapi.json" \
  --url "http://$addr" \
  --header "X-Auth-Token: $token" \
  --checks "${KUP_ST_CHECKS:-not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,negative_data_rejection}" \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$examples" \
  --seed "$seed" \
  --generation-database none \
  --workers 1 \
  --request-timeout 30 \
  --no-color \
  --report ndjson --report-dir "$work/report" \
  ${KUP_ST_ARGS:-} || status=$?

# The figures docs/fuzzing.md quotes: requests sent, answers by status, failed checks.
python3 - "$work"/report/*.ndjson <<'PY' || status=1
import collections, json, sys
operations, statuses, failed = set(), collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    event = json.loads(line)
    scenario = event.get("ScenarioFinished")
    if not scenario:
        continue
    recorder = scenario["recorder"]
    for interaction in recorder.get("interactions", {}).values():
        if recorder["label"] != "Stateful tests":  # the stateful phase's sequences
            operations.add(recorder["label"])
        response = interaction.get("response")
        statuses[response["status_code"] if response else "no answer"] += 1
    for checks in recorder.get("checks", {}).values():
        for check in checks:
            if check["status"] == "failure":
                failed[check["name"]] += 1
server_errors = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
print(f"operations answered: {len(operations)}; requests: {sum(statuses.values())}; "
      f"5xx: {server_errors}; failed checks: {sum(failed.values())} {dict(failed)}")
print("answers by status:", dict(sorted(statuses.items(), key=lambda kv: str(kv[0]))))
sys.exit(1 if server_errors or failed else 0)
PY

# The daemon must still be there, and must not have logged a panic.
kill -0 "$daemon" || { echo "the daemon died"; status=1; }
if grep -q 'panicked' "$work/serve.log"; then
  echo "the daemon panicked:"; grep -A3 'panicked' "$work/serve.log" | head -20; status=1
fi
exit "$status"
