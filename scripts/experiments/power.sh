#!/usr/bin/env bash
# SM clock and board power while ours and cuDNN run the d128 full forward (b2 h16 s8k) back to back for a few seconds
# each: under sustained load the GPU holds its power limit by lowering the clock, which back-to-back timing includes.
set -u
B="$PWD/artifacts/device/flashattn"
OUT="${OUT:-/tmp/flashattn-out}"; mkdir -p "$OUT"
for impl in ours cudnn; do
  nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu --format=csv,noheader,nounits -lms 50 > "$OUT/power-$impl.csv" &
  smi=$!
  if [ $impl = ours ]; then
    "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --repeats 1500 --json "$OUT/power-$impl.json"
  else
    python3 bench/peers/sdpa_peers.py --batch 2 --heads 16 --seqlen 8192 --hdim 128 --full --backends cudnn --repeats 1500 --json "$OUT/power-$impl.json"
  fi > "$OUT/power.log" 2>&1
  kill $smi
done
python3 - "$OUT" <<'PY'
import csv, statistics, sys, os
for impl in ("ours", "cudnn"):
    rows = [r for r in csv.reader(open(os.path.join(sys.argv[1], f"power-{impl}.csv"))) if len(r) == 3]
    busy = [(float(c), float(p), float(t)) for c, p, t in rows if float(p) > 250]
    mid = busy[len(busy) // 4: len(busy) * 3 // 4] or busy
    if mid:
        print(f"power {impl}: {len(mid)} samples under load: SM clock median {statistics.median(c for c, _, _ in mid):.0f} MHz, "
              f"power median {statistics.median(p for _, p, _ in mid):.0f} W, temperature max {max(t for _, _, t in mid):.0f} C")
PY
