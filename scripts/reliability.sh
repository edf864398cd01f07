#!/usr/bin/env bash
# The reliability harnesses in their big modes; RELIABILITY.md holds the figures of the last
# full run. Prints one line per example, race, kind of step and measurement.
#   scripts/reliability.sh [RUNS] [KILLS] [RACE_ROUNDS] [FAULT_SEEDS]
# ONLY=crash|races|faults|store runs one part.
# - crash and abort (crates/kup/tests/reliability.rs): per example, RUNS automated upgrades
#   (default 100) with KILLS SIGKILLs of the daemon at random moments (default 4), and RUNS
#   upgrades aborted at a random moment and killed KILLS times on the way back; every run
#   checked against a crash-free one;
# - races (crates/kup/tests/races.rs): RACE_ROUNDS rounds (default 100) of each race of 16
#   clients against the daemon, and ten times as many in the engine
#   (crates/kup-engine/tests/races.rs);
# - faults (crates/kup-engine/tests/faults.rs, crates/kup/tests/faults.rs): every kind of step
#   in every mode, by hand and automated; the probability faults with FAULT_SEEDS seeds
#   (default 50);
# - the cost of the store's integrity check at open on a 120 MB store.
set -euo pipefail
cd "$(dirname "$0")/.."
# libtest's -q prints a dot per finished test without a newline: a line may start with dots.
lines() { sed -E 's/^\.+//' | grep -E -A2 "$1"; }
runs="${1:-100}"
kills="${2:-4}"
rounds="${3:-100}"
seeds="${4:-50}"
part() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
part crash && for example in standard standard-50-workers kubeadm-v1.29-to-v1.33; do
  KUP_CRASH_EXAMPLE="$example" KUP_CRASH_RUNS="$runs" KUP_ABORT_RUNS="$runs" \
    KUP_CRASH_KILLS="$kills" \
    cargo test --release -q -p kup --test reliability -- --nocapture 2>&1 |
    lines '^(crash|abort)-resume|panicked|FAILED' || { echo "$example: failed"; exit 1; }
done
# One race, one kind of step at a time: each line's time is its own.
if part races; then
  KUP_RACE_ROUNDS="$rounds" \
    cargo test --release -q -p kup --test races -- --nocapture --test-threads 1 2>&1 |
    lines '^race |panicked|FAILED' || { echo "races: failed"; exit 1; }
  KUP_RACE_ROUNDS="$((rounds * 10))" \
    cargo test --release -q -p kup-engine --test races -- --nocapture --test-threads 1 2>&1 |
    lines '^engine race |panicked|FAILED' || { echo "engine races: failed"; exit 1; }
fi
if part faults; then
  KUP_FAULT_SEEDS="$seeds" \
    cargo test --release -q -p kup-engine --test faults -- --nocapture --test-threads 1 2>&1 |
    lines '^faults |panicked|FAILED' || { echo "engine faults: failed"; exit 1; }
  cargo test --release -q -p kup --test faults -- --nocapture --test-threads 1 2>&1 |
    lines '^faults |panicked|FAILED' || { echo "daemon faults: failed"; exit 1; }
fi
if part store; then
  cargo test --release -q -p kup-store integrity_check_cost -- --ignored --nocapture 2>&1 |
    lines '^integrity|^open_existing|panicked|FAILED' || { echo "store check: failed"; exit 1; }
fi
