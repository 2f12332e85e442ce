#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for a while.
#
#   bash fuzz/run.sh [SECONDS]      each target SECONDS (default 60), one after another
#   bash fuzz/run.sh coverage       line coverage of lib/ reached by the corpora
#   bash fuzz/run.sh build          only build the targets
#
# Environment:
#   FUZZ_PARALLEL=N    run N targets at a time (default 1; the machine has 2 cores)
#   FUZZ_TARGETS="a b" only these targets (names as in fuzz/meson.build)
#   FUZZ_JOBS=N        ninja -j (default 1)
#   FUZZ_BUILD=DIR     build directory (default build-fuzz)
#   FUZZ_FRESH=1       start from the committed seeds only (a throwaway working corpus)
#   FUZZ_COV_COMMITTED_ONLY=1  coverage: replay only the committed fuzz/corpus/ (not the working corpora)
#
# Each target starts from fuzz/corpus/<target>/ (read only) plus its working corpus
# $FUZZ_BUILD/fuzz-corpus/<target>/ (new inputs go there), with fuzz/dict/<...>.dict.
# A crash, leak, timeout or invariant violation leaves its reproducer in
# $FUZZ_BUILD/fuzz-findings/<target>/ (the script prints the path) and the script exits 1.
# Reproduce with:  $FUZZ_BUILD/fuzz/<target> <reproducer>
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
PARALLEL=${FUZZ_PARALLEL:-1}
JOBS=${FUZZ_JOBS:-1}

ALL_TARGETS=(fuzz_frames_server fuzz_frames_client fuzz_connection_chunks fuzz_structured fuzz_deflate
             fuzz_request fuzz_response fuzz_negotiation fuzz_url)

dict_for() {
  case "$1" in
    fuzz_frames_*|fuzz_connection_chunks) echo fuzz/dict/frames.dict ;;
    fuzz_request|fuzz_response) echo fuzz/dict/http.dict ;;
    fuzz_structured) echo fuzz/dict/structured.dict ;;
    fuzz_deflate) echo fuzz/dict/deflate.dict ;;
    fuzz_negotiation) echo fuzz/dict/negotiation.dict ;;
    fuzz_url) echo fuzz/dict/url.dict ;;
  esac
}

# configure + build; sets TARGETS to the targets that exist.
build() {
  local dir=$1; shift
  if ! command -v clang++ >/dev/null; then
    echo "fuzz: clang++ is needed (Debian: clang libclang-rt-14-dev)" >&2
    exit 2
  fi
  if [ ! -f "$dir/build.ninja" ]; then
    CXX=clang++ meson setup "$dir" -Dfuzz=true -Dtests=false -Dbench=false "$@" >&2 || exit 2
  fi
  # Regenerate first if a meson.build changed (a new target would not be listed yet).
  ninja -C "$dir" build.ninja >&2 || { echo "fuzz: meson regeneration failed" >&2; exit 2; }
  local want=() defined
  defined=$(ninja -C "$dir" -t targets all 2>/dev/null)
  for t in ${FUZZ_TARGETS:-${ALL_TARGETS[*]}}; do
    # Targets whose source is missing are not defined in fuzz/meson.build.
    if grep -q "^fuzz/$t:" <<<"$defined"; then want+=("fuzz/$t"); fi
  done
  if [ ${#want[@]} -eq 0 ]; then echo "fuzz: no targets to build" >&2; exit 2; fi
  ninja -C "$dir" -j"$JOBS" "${want[@]}" >&2 || { echo "fuzz: build failed" >&2; exit 2; }
  TARGETS=()
  for w in "${want[@]}"; do TARGETS+=("${w#fuzz/}"); done
}

coverage() {
  # A separate build: no sanitizers, clang source-based coverage on everything.
  local dir=${FUZZ_COV_BUILD:-build-fuzz-cov}
  local flags="-fprofile-instr-generate -fcoverage-mapping"
  build "$dir" "-Dcpp_args=$flags" "-Dcpp_link_args=$flags" -Db_sanitize=none
  local prof=$dir/profiles
  rm -rf "$prof"; mkdir -p "$prof"
  local objects=()
  for t in "${TARGETS[@]}"; do
    local dirs=()
    [ -d "fuzz/corpus/$t" ] && dirs+=("fuzz/corpus/$t")
    [ "${FUZZ_COV_COMMITTED_ONLY:-0}" != 1 ] && [ -d "$BUILD/fuzz-corpus/$t" ] && dirs+=("$BUILD/fuzz-corpus/$t")
    [ ${#dirs[@]} -eq 0 ] && continue
    echo "coverage: replaying ${dirs[*]} through $t" >&2
    # Files, not directories: libFuzzer only executes them and writes nothing.
    local files=()
    for d in "${dirs[@]}"; do files+=("$d"/*); done
    LLVM_PROFILE_FILE="$prof/$t-%p.profraw" "$dir/fuzz/$t" "${files[@]}" >/dev/null 2>&1
    objects+=(-object "$dir/fuzz/$t")
  done
  llvm-profdata-14 merge -sparse "$prof"/*.profraw -o "$prof/merged.profdata" || exit 1
  # The first -object is the main binary argument of llvm-cov.
  local main=${objects[1]}
  echo
  echo "Line coverage of lib/ reached by the fuzz corpora (all targets together):"
  # Only lib/: the harness, the public headers and system headers are left out.
  local only_lib='^(fuzz|include|tests|tools|subprojects)/|^/usr/|/fuzz/|/include/ws6455/'
  llvm-cov-14 report "$main" "${objects[@]:2}" -instr-profile="$prof/merged.profdata" -ignore-filename-regex="$only_lib"
  llvm-cov-14 show "$main" "${objects[@]:2}" -instr-profile="$prof/merged.profdata" -ignore-filename-regex="$only_lib" \
    -format=html -output-dir="$dir/coverage-html" >/dev/null 2>&1 &&
    echo "HTML: $dir/coverage-html/index.html"
}

# run_one TARGET: fuzzes it; writes a summary line to $RESULTS/TARGET.
run_one() {
  local t=$1
  local work=$BUILD/fuzz-corpus/$t
  [ "${FUZZ_FRESH:-0}" = 1 ] && work=$(mktemp -d)
  local findings=$BUILD/fuzz-findings/$t
  mkdir -p "$work" "$findings"
  local args=(-max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=25 -max_len=8192
              -print_final_stats=1 -artifact_prefix="$findings/")
  local d; d=$(dict_for "$t")
  [ -n "$d" ] && [ -f "$d" ] && args+=(-dict="$d")
  local corpora=("$work")
  [ -d "fuzz/corpus/$t" ] && corpora+=("fuzz/corpus/$t")
  local log=$BUILD/fuzz-logs/$t.log
  mkdir -p "$BUILD/fuzz-logs"
  local before; before=$(ls "$findings" | wc -l)
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    "$BUILD/fuzz/$t" "${args[@]}" "${corpora[@]}" >"$log" 2>&1
  local rc=$?
  local after; after=$(ls "$findings" | wc -l)
  local done_line; done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n1)
  local cov ft corp execs eps
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$done_line")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  local status=ok
  if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
    status="FINDING (exit $rc): $(ls -t "$findings" | head -n1 | sed "s|^|$findings/|")"
  fi
  printf '%-24s %10s %8s %7s %7s %6s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status" \
    >"$RESULTS/$t"
  [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$work"
  [ "$status" = ok ]
}

if [ "$SECONDS_PER_TARGET" = coverage ]; then
  coverage
  exit $?
fi
if [ "$SECONDS_PER_TARGET" = build ]; then
  build "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false
  exit 0
fi
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -eq 0 ]; then
  echo "usage: bash fuzz/run.sh [SECONDS>0] | coverage | build" >&2
  exit 2
fi

build "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false
RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT
echo "fuzz: ${TARGETS[*]}: ${SECONDS_PER_TARGET}s each, $PARALLEL at a time (logs in $BUILD/fuzz-logs/)" >&2
running=0
failed=0
for t in "${TARGETS[@]}"; do
  echo "fuzz: $t ..." >&2
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done

echo
printf '%-24s %10s %8s %7s %7s %6s  %s\n' target execs exec/s edges features corpus result
for t in "${TARGETS[@]}"; do cat "$RESULTS/$t" 2>/dev/null || echo "$t: no result"; done
if [ "$failed" -ne 0 ]; then
  echo
  echo "fuzz: FINDINGS: reproduce with $BUILD/fuzz/<target> <file>; the log is in $BUILD/fuzz-logs/<target>.log" >&2
  exit 1
fi
