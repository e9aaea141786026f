#!/usr/bin/env bash
# Plants each bug of issue 23's table, one at a time, in a scratch copy of the working tree, runs the whole test suite
# there and lists the tests that fail; the copy is thrown away at the end, so the working tree is never edited. Every
# planted bug must fail at least one test: exit 1 if one does not (or if the unplanted copy fails a test).
#
#   bash scripts/mutation-check.sh              # every bug, a Markdown table on stdout, logs in $MUTATION_LOGS
#   bash scripts/mutation-check.sh scale lse    # only the bugs whose name contains one of the words
#
# About a minute per bug on 2 cores (a build and the suite). NVRTC is left off the path so that the run matches CI.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mutation-check.XXXXXX")
logs=${MUTATION_LOGS:-$scratch-logs}
mkdir -p "$logs"
trap 'rm -rf "$scratch"' EXIT

# name # file # sed script (must change the file) # what it plants
mutations=(
  "window-left-off-by-one#src/FlashAttention/AttentionMask.cs#s/long first = (long)i + SeqLenK - SeqLenQ - WindowLeft;/long first = (long)i + SeqLenK - SeqLenQ - WindowLeft + 1;/#sliding window: left bound off by one (shared AttentionMask)"
  "causal-offset-plus-one#src/FlashAttention/AttentionMask.cs#s/long last = (long)i + SeqLenK - SeqLenQ + WindowRight;/long last = (long)i + SeqLenK - SeqLenQ + 1 + WindowRight;/#causal bottom-right offset +1 (shared AttentionMask)"
  "default-scale-one-over-d#src/FlashAttention/AttentionValidation.cs#s|(float)(1.0 / Math.Sqrt(g.HeadDim))|(float)(1.0 / g.HeadDim)|#default scale 1/d (shared validation)"
  "reference-gqa-modulo#src/FlashAttention/Cpu/ReferenceAttention.cs#s|hk = h / p.GroupSize;|hk = h % p.HeadsK;|#reference only: GQA key head h % HeadsK"
  "reference-lse-log2#src/FlashAttention/Cpu/ReferenceAttention.cs#s|lse\[LseIndex(p, b, h, i)\] = rowLse;|lse[LseIndex(p, b, h, i)] = rowLse / Math.Log(2);|#reference only: LSE in log2"
  "reference-softcap-derivative#src/FlashAttention/Cpu/ReferenceAttention.cs#/dScore \*= 1 - tanh\[j\] \* tanh\[j\];/d#reference only: softcap derivative dropped"
  "engine-gqa-modulo#src/FlashAttention/Cpu/CpuFlashAttention.cs#s|int hk = h / p.GroupSize;|int hk = h % p.HeadsK;|#engine only: GQA key head h % HeadsK"
  "engine-lse-log2#src/FlashAttention/Cpu/CpuFlashAttention.cs#s|(float)(rowMax\[i\] \* Ln2 + Math.Log(l))|(float)(rowMax[i] + Math.Log2(l))|#engine only: LSE in log2"
  "engine-softcap-derivative#src/FlashAttention/Cpu/CpuFlashAttention.Backward.cs#s|dsdt = TV.Mul(scale, TV.Sub(one, TV.Mul(th, th)));|dsdt = scale;|#engine only: softcap derivative dropped"
)

# selected NAME [WORD…]: true when no word is given or NAME contains one of them.
selected() {
  local name=$1; shift
  [ $# -eq 0 ] && return 0
  for word in "$@"; do [[ $name == *"$word"* ]] && return 0; done
  return 1
}

# The working tree as it is (uncommitted edits included), without build outputs.
tar -C "$root" --exclude=./.git --exclude='*/bin' --exclude='*/obj' --exclude=./artifacts --exclude='*/TestResults' -cf - . | tar -C "$scratch" -xf -
cd "$scratch"
unset FLASHATTN_NVRTC
export LD_LIBRARY_PATH=
dotnet restore --verbosity quiet > "$logs/restore.log" 2>&1

# Runs the suite; prints the failing tests, one per line, sorted.
run_suite() {
  local log=$1
  if ! dotnet build -c Release --no-restore > "$log.build" 2>&1; then
    echo "BUILD-FAILED"
    return
  fi
  dotnet test -c Release --no-build > "$log" 2>&1 || true
  grep -E '^\s+Failed [A-Za-z]' "$log" | sed -E 's/^\s+Failed //; s/ \[[0-9.]+ m?s\]$//' | sort -u || true
}

baseline=$(run_suite "$logs/baseline.log")
if [ -n "$baseline" ]; then
  echo "the unplanted copy fails (see $logs/baseline.log):" >&2
  echo "$baseline" >&2
  exit 1
fi

echo "| planted bug | failing tests | which |"
echo "|---|---:|---|"
status=0
for m in "${mutations[@]}"; do
  IFS='#' read -r name file script what <<< "$m"
  selected "$name" "$@" || continue
  cp "$file" "$file.orig"
  sed -i -e "$script" "$file"
  if cmp -s "$file" "$file.orig"; then
    echo "| $what | — | the sed script no longer matches $file: update it |"
    status=1
    mv "$file.orig" "$file"
    continue
  fi
  failed=$(run_suite "$logs/$name.log")
  mv "$file.orig" "$file"
  if [ "$failed" = "BUILD-FAILED" ]; then
    echo "| $what | — | the planted copy does not build ($logs/$name.log.build) |"
    status=1
    continue
  fi
  count=$(printf '%s' "$failed" | grep -c . || true)
  # Theory rows fold into their method: "Class.Method ×rows".
  methods=$(printf '%s\n' "$failed" | grep . | sed -E 's/\(.*$//; s/^FlashAttention\.Tests\.//' | sort | uniq -c | awk '{ printf "%s%s", sep, $2 ($1 > 1 ? " ×" $1 : ""); sep = ", " }')
  echo "| $what | $count | ${methods:-NONE} |"
  [ "$count" -gt 0 ] || status=1
done
exit $status
