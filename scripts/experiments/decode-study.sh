#!/usr/bin/env bash
# The decode kernel's tile, split and launch choices on the device machine (after scripts/publish-device.sh, carry
# ["artifacts/device"]): d128 variants of FLASHATTN_DECODE_CONFIG on the contiguous decode grid (variants.sh: screened
# with verify --decode --quick, timed twice in alternating order), forced split counts on the small-batch shapes, and
# the launch without programmatic dependence. JSON rows go into $OUT/decode-study.tgz. Results go to bench/results.
set -u
B="$PWD/artifacts/device/flashattn"
OUT="${OUT:-/tmp/flashattn-out}"; mkdir -p "$OUT/study"
export FLASHATTN_CACHE_DIR="${FLASHATTN_CACHE_DIR:-/tmp/flashattn-cache}"
D="bench --device cuda --decode --heads 32 --heads-k 8 --hdim 128"
OUT="$OUT/study" VARIANT_VAR=FLASHATTN_DECODE_CONFIG SCREEN_ARGS="--decode --quick" RACECHECK=0 \
  VARIANTS="${DECODE_VARIANTS:-default= n128s2=128:n128,s2,c1 n128s3=128:n128,s3,c1 n64s6=128:n64,s6,c1 n32s6c2=128:n32,s6,c2}" \
  BENCH_ARGS="--grid decode --page-size 0" timeout "${SWEEP_LIMIT:-300}" bash scripts/experiments/variants.sh
for s in ${SPLITS:-4 8 16 32 64}; do
  echo "=== splits $s" | tee -a "$OUT/study/splits.log"
  FLASHATTN_DECODE_SPLITS=$s timeout 60 "$B" $D --batch 1 --kv-len 4096 8192 32768 --json "$OUT/study/splits-b1-$s.json" >> "$OUT/study/splits.log" 2>&1
  FLASHATTN_DECODE_SPLITS=$s timeout 60 "$B" $D --batch 8 --kv-len 8192 --json "$OUT/study/splits-b8-$s.json" >> "$OUT/study/splits.log" 2>&1
done
for pdl in on off; do
  echo "=== pdl $pdl" | tee -a "$OUT/study/pdl.log"
  FLASHATTN_DECODE_PDL=$pdl timeout 60 "$B" $D --batch 1 --kv-len 4096 --page-size 0 16 --json "$OUT/study/pdl-$pdl.json" >> "$OUT/study/pdl.log" 2>&1
done
grep -hE "^(=== |verify exit)|fwd .*bf16" "$OUT/study/variants.log" "$OUT/study/splits.log" "$OUT/study/pdl.log"
tar czf "$OUT/decode-study.tgz" -C "$OUT" study && rm -rf "$OUT/study"
