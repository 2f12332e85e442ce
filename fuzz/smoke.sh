#!/usr/bin/env bash
# CI smoke run: builds the fuzz targets (ASan + UBSan + libFuzzer), replays the committed
# corpora (regression: every seed and past reproducer must pass), then fuzzes each target
# for FUZZ_SMOKE_SECONDS (default 20) from the committed seeds only, two at a time.
# Exits non-zero on any finding; the reproducer's path is printed.
# Budget: build ~4 min on 2 cores, replay < 10 s, 7 targets x 20 s / 2 ≈ 1.5 min.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD:-build-fuzz}
export FUZZ_BUILD=$BUILD
export FUZZ_JOBS=${FUZZ_JOBS:-2}

# 1. Regression: replay the committed corpora (fast, deterministic).
bash fuzz/run.sh build || exit 2
status=0
for exe in "$BUILD"/fuzz/fuzz_*; do
  [ -x "$exe" ] && [ -f "$exe" ] || continue
  t=$(basename "$exe")
  [ -d "fuzz/corpus/$t" ] || continue
  # Files, not the directory: libFuzzer then only executes them and never writes there.
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$exe" -rss_limit_mb=2048 "fuzz/corpus/$t"/* \
      >"$BUILD/$t.replay.log" 2>&1; then
    echo "smoke: $t fails on its committed corpus; see $BUILD/$t.replay.log" >&2
    tail -n 30 "$BUILD/$t.replay.log" >&2
    status=1
  fi
done

# 2. Short fuzzing from the seeds.
FUZZ_FRESH=1 FUZZ_PARALLEL=${FUZZ_PARALLEL:-2} bash fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-20}" || status=1
exit $status
