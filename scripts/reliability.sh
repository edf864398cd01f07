#!/usr/bin/env bash
# The full crash-and-resume harness: per example, RUNS automated upgrades (default 100) with
# KILLS SIGKILLs of the daemon at random moments (default 4), and RUNS upgrades aborted at a
# random moment and killed KILLS times on the way back; every run checked against a crash-free
# one (crates/kup/tests/reliability.rs says what is checked). Prints one line per example and
# test; RELIABILITY.md holds the figures of the last full run.
#   scripts/reliability.sh [RUNS] [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-100}"
kills="${2:-4}"
for example in standard standard-50-workers kubeadm-v1.29-to-v1.33; do
  KUP_CRASH_EXAMPLE="$example" KUP_CRASH_RUNS="$runs" KUP_ABORT_RUNS="$runs" \
    KUP_CRASH_KILLS="$kills" \
    cargo test --release -q -p kup --test reliability -- --nocapture 2>&1 |
    grep -E -A2 '^(crash|abort)-resume|panicked|FAILED' || { echo "$example: failed"; exit 1; }
done
