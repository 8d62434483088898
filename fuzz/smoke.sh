#!/usr/bin/env bash
# A short run of every fuzz target, from the committed seed corpus.
#   bash fuzz/smoke.sh            # 10 s per target (CI)
#   FUZZ_SECONDS=600 bash fuzz/smoke.sh   # a longer hunt
# cargo fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP lets the machine's one
# stable toolchain accept them. New inputs found go to fuzz/corpus/<target>/
# (ignored by git); crashes go to fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-10}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
for t in $targets; do
  mkdir -p "corpus/$t"
  echo "-- fuzz $t for ${seconds}s"
  log="$(mktemp)"
  status=0
  cargo fuzz run "$t" "corpus/$t" "corpus/seed-$t" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed (exit $status): see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz smoke: all targets ran ${seconds}s without a crash"
