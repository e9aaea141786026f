#!/usr/bin/env bash
# Two builds on one device call: artifacts/device against an earlier build carried in artifacts/device-old, on the
# bench arguments in AB_ARGS (default: the forward paper grid), twice each, alternating who goes first.
set -u
NEW="$PWD/artifacts/device/flashattn" OLD="$PWD/artifacts/device-old/flashattn"
OUT="${OUT:-/tmp/flashattn-out}"; mkdir -p "$OUT"
export FLASHATTN_CACHE_DIR="${FLASHATTN_CACHE_DIR:-/tmp/flashattn-cache}"
for round in 1 2; do
  for v in $([ $round = 1 ] && echo "new old" || echo "old new"); do
    bin=$NEW; [ $v = old ] && bin=$OLD
    echo "=== ab $v round $round" | tee -a "$OUT/ab.log"
    timeout 300 "$bin" bench --device cuda ${AB_ARGS:---grid paper --forward} --json "$OUT/ab-$v-$round.json" >> "$OUT/ab.log" 2>&1
  done
done
grep -E "^(=== ab|│ (fwd|bwd))" "$OUT/ab.log"
