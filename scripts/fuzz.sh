#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on stable Rust, without cargo-fuzz or nightly: the
# targets of fuzz/ are built with the SanitizerCoverage instrumentation cargo-fuzz uses
# (stable codegen options), but no sanitizer (those need nightly; kup forbids unsafe code, so
# AddressSanitizer would find little). TARGET runs for SECONDS from its saved corpus; the
# inputs it adds go to a scratch directory (fuzz/corpus/ stays as generated), and a crash,
# leak or slow input goes to fuzz/artifacts/TARGET/, which the stable replay test runs.
#   scripts/fuzz.sh TARGET [SECONDS] [libFuzzer options...]
# With nightly, `cargo +nightly fuzz run TARGET` does the same with AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh TARGET [SECONDS] [libFuzzer options...]}"
seconds="${2:-600}"
shift $(($# < 2 ? $# : 2))
triple="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps these flags off build scripts and procedural macros, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build -q --manifest-path fuzz/Cargo.toml --locked --release --target "$triple" --bin "$target"
bin="${CARGO_TARGET_DIR:-fuzz/target}/$triple/release/$target"
scratch="${KUP_FUZZ_SCRATCH:-${TMPDIR:-/tmp}/kup-fuzz}/$target"
mkdir -p "$scratch" "fuzz/artifacts/$target"
exec "$bin" "$scratch" "fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" "$@"
