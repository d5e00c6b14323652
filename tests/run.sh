#!/usr/bin/env bash
# Builds syncd and runs every test: the doctest suites and fuzz-corpus replays (CTest), once in a
# normal build and once built with AddressSanitizer + UndefinedBehaviorSanitizer, then each
# libFuzzer target for a short fixed time (clang). Prints "N passed, N failed" at the end.
#
#   bash tests/run.sh            # all of it
#   FUZZ_SECONDS=0 bash tests/run.sh   # skip the timed fuzzing
#
# Set SYNCD_REQUIRE_ALL=1 (CI does) to fail when any test was skipped. The per-step logs stay in
# /tmp/syncd-tests-* when something failed (or with SYNCD_KEEP_LOGS=1) and are removed otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
passed=0
failed=0
log_dir=$(mktemp -d /tmp/syncd-tests-XXXXXX)

# run_ctest NAME BUILD_DIR [CMAKE ARGS...]: configure, build, run CTest; tally results.
run_ctest() {
  local name=$1 dir=$2
  shift 2
  echo "=== $name: configure and build ($dir)"
  if ! cmake -S . -B "$dir" "$@" >"$log_dir/$name-configure.log" 2>&1; then
    cat "$log_dir/$name-configure.log"
    failed=$((failed + 1))
    return
  fi
  if ! cmake --build "$dir" -j"$JOBS" >"$log_dir/$name-build.log" 2>&1; then
    tail -50 "$log_dir/$name-build.log"
    failed=$((failed + 1))
    return
  fi
  echo "=== $name: ctest"
  ctest --test-dir "$dir" -j"$JOBS" --output-on-failure --no-tests=error 2>&1 | tee "$log_dir/$name-ctest.log"
  local line total fails skipped
  line=$(grep -E '[0-9]+% tests passed' "$log_dir/$name-ctest.log" | tail -1)
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  fails=$(sed -E 's/.*, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  if [[ -z "$line" || -z "$total" ]]; then
    echo "$name: could not read CTest's summary"
    failed=$((failed + 1))
    return
  fi
  skipped=$(grep -c -E '\*\*\*Skipped|Not Run' "$log_dir/$name-ctest.log" || true)
  if [[ "${SYNCD_REQUIRE_ALL:-0}" == 1 && "$skipped" -gt 0 ]]; then
    echo "$name: $skipped test(s) skipped; SYNCD_REQUIRE_ALL=1 counts them as failures"
    fails=$((fails + skipped))
  fi
  passed=$((passed + total - fails))
  failed=$((failed + fails))
}

# Line tables only (-g1): enough for every backtrace and sanitizer report; full debug info cost
# over a quarter of the compile time. The sanitizer builds use -O1, as AddressSanitizer's
# documentation suggests: at -O2 -g their instrumented code took twice as long to compile
# (measured on lib/runtime: 107 s against 43 s for sender.cpp).
flags() { echo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$1 -g1 -DNDEBUG"; echo "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$1 -g1 -DNDEBUG"; }
mapfile -t plain_flags < <(flags -O2)
mapfile -t sanitize_flags < <(flags -O1)

run_ctest plain build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${plain_flags[@]}"
run_ctest sanitize build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo "${sanitize_flags[@]}" "-DSYNCD_SANITIZE=address;undefined" \
  -DSYNCD_TEST_TIMEOUT_MULTIPLIER=4 -DSYNCD_BUILD_BENCHES=OFF

# Timed fuzzing: each libFuzzer target for FUZZ_SECONDS, starting from its committed corpus and
# the seeds its replay binary generates. A crash fails the run and leaves the input in the log dir.
if [[ "$FUZZ_SECONDS" -gt 0 ]]; then
  if command -v clang++ >/dev/null; then
    echo "=== fuzz: build (clang, libFuzzer + ASan/UBSan)"
    if CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo "${sanitize_flags[@]}" \
        -DSYNCD_BUILD_FUZZERS=ON "-DSYNCD_SANITIZE=address;undefined" \
        -DSYNCD_BUILD_TESTS=ON -DSYNCD_BUILD_BENCHES=OFF >"$log_dir/fuzz-configure.log" 2>&1 &&
       cmake --build build-fuzz -j"$JOBS" --target fuzz_frame fuzz_zstd_stream fuzz_patch \
         fuzz_replay_frame fuzz_replay_zstd_stream fuzz_replay_patch >"$log_dir/fuzz-build.log" 2>&1; then
      for t in frame zstd_stream patch; do
        work=$(mktemp -d "$log_dir/corpus-$t-XXXX")
        ./build-fuzz/tests/fuzz/fuzz_replay_"$t" --dump-seeds "$work" >/dev/null
        if (cd "$log_dir" && "$OLDPWD"/build-fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$FUZZ_SECONDS" \
              -rss_limit_mb=2048 -print_final_stats=1 "$work" "$OLDPWD/tests/fuzz/corpus/$t") \
              >"$log_dir/fuzz-$t.log" 2>&1; then
          echo "fuzz $t: $(grep -E 'stat::number_of_executed_units' "$log_dir/fuzz-$t.log" | awk '{print $2}') runs, no crash"
          passed=$((passed + 1))
        else
          echo "fuzz $t: FAILED"; tail -40 "$log_dir/fuzz-$t.log"
          failed=$((failed + 1))
        fi
      done
    else
      tail -40 "$log_dir/fuzz-build.log"
      failed=$((failed + 1))
    fi
  else
    echo "fuzz: clang++ not installed; timed fuzzing not run"
    [[ "${SYNCD_REQUIRE_ALL:-0}" == 1 ]] && failed=$((failed + 1))
  fi
fi

# The logs matter only when something failed (or when asked to keep them): no litter in /tmp.
if [[ "$failed" -eq 0 && "${SYNCD_KEEP_LOGS:-0}" != 1 ]]; then
  rm -rf "$log_dir"
else
  echo "logs: $log_dir"
fi
echo "${passed} passed, ${failed} failed"
[[ "$failed" -eq 0 ]]
