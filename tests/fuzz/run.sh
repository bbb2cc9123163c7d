#!/bin/sh
# run.sh - runs one libFuzzer harness for make fuzz and says whether it
# found anything.  Usage: run.sh FUZZDIR NAME SECONDS [libFuzzer option...]
#
# Copies the seed corpus FUZZDIR/seeds/KIND (KIND is NAME without "fuzz_")
# to a fresh FUZZDIR/corpus/KIND, so every run starts from the same seeds,
# runs FUZZDIR/NAME on it for SECONDS with the time, memory and per-input
# limits below, logs to FUZZDIR/NAME.log, and exits non-zero if libFuzzer
# did (a crash, a leak, a timeout or running out of memory), naming the
# reproducer it wrote to FUZZDIR/artifacts/.  It fuzzes; it does not
# minimise or triage.
set -u

dir=$1
name=$2
seconds=$3
shift 3
kind=${name#fuzz_}
corpus=$dir/corpus/$kind
log=$dir/$name.log

rm -rf "$corpus"
mkdir -p "$dir/corpus" "$dir/artifacts"
cp -R "$dir/seeds/$kind" "$corpus"
rm -f "$dir/artifacts/$name-"*

set -- "$dir/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/$name-" "$@" "$corpus"
echo "fuzz: $* ($(ls "$corpus" | wc -l) seeds)"
# The exit status of the fuzzer, not of tee, decides.
status=$( { { "$@" 2>&1; echo $? >&3; } | tee "$log" >&2; } 3>&1 )

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [ "$status" = 0 ]; then
    echo "fuzz: $name: ${execs:-?} inputs in $seconds s, no crash, leak or timeout" \
         "(corpus now $(ls "$corpus" | wc -l) files; log $log)"
    exit 0
fi
echo "fuzz: $name FAILED (exit status $status); log $log" >&2
grep -E '^(==[0-9]+==)?(ERROR|SUMMARY):|^SUMMARY:|deadly signal|ALARM|out-of-memory' \
    "$log" | head -n 10 >&2
for f in "$dir/artifacts/$name-"*; do
    [ -e "$f" ] && echo "fuzz: reproducer: $f (run: $dir/$name $f)" >&2
done
exit 1
