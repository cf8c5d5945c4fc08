#!/bin/bash
# Runs every libFuzzer harness (make fuzz) for FUZZ_SECONDS (default 30)
# each, starting from its corpus in test/fuzz/corpus/<name> (copied: the
# repo's corpus is not modified). A crash fails the run; its input is kept
# under $CRISP_TEST_WORK/fuzz/. Used by test/run when clang is installed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
SECONDS_EACH="${FUZZ_SECONDS:-30}"
WORKDIR="${CRISP_TEST_WORK:-test/.work}/fuzz"
mkdir -p "$WORKDIR"
rc=0
for bin in build/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name="${bin##*/fuzz_}"
  corpus="$WORKDIR/corpus-$name"
  rm -rf "$corpus"; mkdir -p "$corpus"
  [ -d "test/fuzz/corpus/$name" ] && cp "test/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null
  if "$bin" -max_total_time="$SECONDS_EACH" -artifact_prefix="$WORKDIR/$name-" "$corpus" \
       >"$WORKDIR/$name.log" 2>&1; then
    echo "fuzz $name: $(grep -o 'Done [0-9]* runs' "$WORKDIR/$name.log") in ${SECONDS_EACH}s, no crash"
  else
    echo "fuzz $name: FAILED (input and log under $WORKDIR)"; tail -30 "$WORKDIR/$name.log"; rc=1
  fi
done
exit $rc
