#!/usr/bin/env bash
# A kernel variant against the default, on the device machine: each override (the lab's FLASHATTN_FWD_CONFIG or, with
# VARIANT_VAR=FLASHATTN_BWD_CONFIG, the backward's) is screened with verify's quick cases and racecheck, then every
# variant is timed on BENCH_ARGS twice, the second round in reverse order (clocks drift over a call).
#   VARIANTS="default= n176=128:n176,alias" BENCH_ARGS="--grid paper --forward --hdim 128" bash scripts/experiments/variants.sh
# Decode: VARIANT_VAR=FLASHATTN_DECODE_CONFIG SCREEN_ARGS="--decode --quick" BENCH_ARGS="--grid decode --page-size 0";
# RACECHECK=0 leaves racecheck out of the screen (a sweep of many variants).
# Screen each override here first (scripts/local-sass.sh: spills, serialised wgmma). Results go to bench/results.
set -u
B="$PWD/artifacts/device/flashattn"
OUT="${OUT:-/tmp/flashattn-out}"; mkdir -p "$OUT"
export FLASHATTN_CACHE_DIR="${FLASHATTN_CACHE_DIR:-/tmp/flashattn-cache}"
var=${VARIANT_VAR:-FLASHATTN_FWD_CONFIG}
names=(${VARIANTS:-default=})
for item in "${names[@]}"; do
  name=${item%%=*} cfg=${item#*=}
  [ -n "$cfg" ] || continue
  echo "=== screen $name ($var=$cfg)" | tee -a "$OUT/variants.log"
  env "$var=$cfg" timeout 120 "$B" verify --device cuda ${SCREEN_ARGS:---quick --no-probes} >> "$OUT/variants.log" 2>&1; echo "verify exit $?" | tee -a "$OUT/variants.log"
  [ "${RACECHECK:-1}" = 0 ] && continue
  env "$var=$cfg" timeout 300 compute-sanitizer --tool racecheck "$B" verify --device cuda ${SCREEN_ARGS:---quick --no-probes} >> "$OUT/variants.log" 2>&1
  echo "racecheck exit $?" | tee -a "$OUT/variants.log"
done
for round in 1 2; do
  order=("${names[@]}"); [ $round = 2 ] && order=($(printf '%s\n' "${names[@]}" | tac))
  for item in "${order[@]}"; do
    name=${item%%=*} cfg=${item#*=}
    echo "=== variant $name round $round" | tee -a "$OUT/variants.log"
    env ${cfg:+"$var=$cfg"} timeout 300 "$B" bench --device cuda ${BENCH_ARGS:---grid paper --forward} --json "$OUT/variant-$name-$round.json" >> "$OUT/variants.log" 2>&1
  done
done
grep -E "^(=== |verify exit|racecheck exit|│ (fwd|bwd))" "$OUT/variants.log"
