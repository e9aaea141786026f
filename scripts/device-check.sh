#!/usr/bin/env bash
# Runs the GPU checks on the device machine (see CONTRIBUTING.md): publish the AOT binary here first
# (scripts/publish-device.sh), then through the device tool, with carry ["artifacts/device"]:
#   bash scripts/device-check.sh info warmup sass verify-quick verify-fwd verify-bwd bench peers sanitize
# Each stage writes a log under $OUT (at most a few files: the device tool brings back 8) and goes on after a failure;
# hangs are cut by per-stage timeouts. The last lines printed are a summary.
set -u
B="$PWD/artifacts/device/flashattn"
export OUT="${OUT:-/tmp/flashattn-out}"
mkdir -p "$OUT"
export FLASHATTN_CACHE_DIR="${FLASHATTN_CACHE_DIR:-/tmp/flashattn-cache}"
export FLASHATTN_DUMP_DIR="${FLASHATTN_DUMP_DIR:-/tmp/flashattn-dump}"
# The commit the binary was published from (scripts/publish-device.sh writes it; git on the device machine may see a
# stale copy of .git), unless given.
export FLASHATTN_COMMIT="${FLASHATTN_COMMIT:-$(cat "$PWD/artifacts/device/COMMIT" 2>/dev/null || echo unknown)}"
export PYTHONUNBUFFERED=1
summary=()

run() {  # run NAME TIMEOUT LOG CMD...
  local name=$1 limit=$2 log=$3; shift 3
  echo "=== $name: $*" | tee -a "$OUT/$log"
  local start=$SECONDS
  timeout "$limit" "$@" >> "$OUT/$log" 2>&1
  local rc=$?
  summary+=("$name: exit $rc in $((SECONDS - start)) s")
  tail -n 25 "$OUT/$log"
  return 0
}

for stage in "$@"; do
  case "$stage" in
    info)
      run nvidia-smi 30 info.log nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv
      run info 60 info.log "$B" info ;;
    warmup)
      run warmup 300 info.log "$B" warmup --probes --ablations --jobs 16 ;;
    sass)
      {
        for f in "$FLASHATTN_DUMP_DIR"/*.cubin; do
          [ -e "$f" ] || continue
          s=$(cuobjdump --dump-sass "$f" 2>/dev/null)
          printf '%-90s HGMMA %5d  LDL %4d  STL %4d\n' "$(basename "$f")" "$(grep -c HGMMA <<<"$s")" "$(grep -c 'LDL' <<<"$s")" "$(grep -c 'STL' <<<"$s")"
        done
      } > /tmp/sass.log 2>&1
      { echo "=== sass (HGMMA count, local loads/stores per cubin)"; cat /tmp/sass.log; } >> "$OUT/info.log"
      summary+=("sass: $(grep -c cubin /tmp/sass.log) cubins, $(awk '$5 > 0 || $7 > 0' /tmp/sass.log | grep -c cubin) with local memory")
      cat /tmp/sass.log ;;
    sass-spills)
      # where each cubin with local memory loads and stores it: the SASS lines around every LDL/STL (after warmup)
      for f in "$FLASHATTN_DUMP_DIR"/*.cubin; do
        [ -e "$f" ] || continue
        s=$(cuobjdump --dump-sass "$f" 2>/dev/null)
        grep -qE 'LDL|STL' <<<"$s" || continue
        { echo "=== $(basename "$f") $(cut -f1 "${f%.cubin}.names" 2>/dev/null | tr '\n' ' ')"
          grep -nE 'LDL|STL' <<<"$s" | head -60
          grep -nE -B8 -A3 'LDL|STL' <<<"$s" | grep -vE '^\s*$' | head -400; } >> "$OUT/sass-spills.txt"
      done
      summary+=("sass-spills: $(grep -c '^===' "$OUT/sass-spills.txt" 2>/dev/null || echo 0) cubins") ;;
    verify-quick) run verify-quick 90 verify.log "$B" verify --device cuda --quick ;;
    verify-fwd) run verify-fwd 200 verify.log "$B" verify --device cuda --forward --no-probes ;;
    verify-bwd) run verify-bwd 200 verify.log "$B" verify --device cuda --backward --no-probes ;;
    run-gpu) run run-gpu 120 verify.log python3 scripts/numpy_attention_check.py --flashattn "$B" --device cuda ;;
    bench) run bench 480 bench.log "$B" bench --device cuda --grid paper --json "$OUT/ours.json" ;;
    bench-fwd) run bench-fwd 300 bench.log "$B" bench --device cuda --grid paper --forward --json "$OUT/ours.json" ;;
    ablation) run ablation 300 bench.log "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --ablation --json "$OUT/ablation.json" ;;
    example)
      # the README's training-step example (AOT-published to artifacts/example; carry it too)
      run example 300 verify.log artifacts/example/GpuTrainingStep ;;
    bench-bwd) run bench-bwd 240 bench.log "$B" bench --device cuda --grid paper --backward --json "$OUT/ours-bwd.json" ;;
    record)
      # The recorded run: everything a results folder needs, in one device call (ours and the peers on one machine):
      # the timings early, the long backward verify late; the JSON packed into one archive, as the device tool brings
      # back at most 8 files.
      "$0" info warmup sass verify-quick verify-fwd run-gpu bench peers-fwd ablation peers-bwd sanitize verify-bwd deterministic example
      (cd "$OUT" && tar czf json.tgz ./*.json && rm -f ./*.json)
      exit 0 ;;
    pack)
      # the device tool brings back at most 8 files: the JSON written so far into one archive (json-1.tgz, json-2.tgz, …)
      n=1; while [ -e "$OUT/json-$n.tgz" ]; do n=$((n + 1)); done
      if ls "$OUT"/*.json >/dev/null 2>&1; then (cd "$OUT" && tar czf "json-$n.tgz" ./*.json && rm -f ./*.json); fi ;;
    peers) run peers 480 peers.log python3 bench/peers/sdpa_peers.py --grid paper --json "$OUT/peers.json" ;;
    peers-fwd) run peers-fwd 200 bench.log python3 bench/peers/sdpa_peers.py --grid paper --json "$OUT/peers.json" --ours "$OUT/ours.json" ;;
    peers-bwd) run peers-bwd 200 bench.log python3 bench/peers/sdpa_peers.py --grid paper --backward --json "$OUT/peers-bwd.json" --ours "$OUT/ours.json" ;;
    interleaved)
      # ours and the peers case by case (sdpa_peers.py runs our binary beside them, alternating who goes first):
      # ratios that do not depend on how the GPU's clocks drift between one grid and the next
      run interleaved-fwd 400 bench.log python3 bench/peers/sdpa_peers.py --grid paper --interleave-ours "$B" --ours-json "$OUT/ours-interleaved.json" --json "$OUT/peers-interleaved.json"
      run interleaved-bwd 400 bench.log python3 bench/peers/sdpa_peers.py --grid paper --backward --interleave-ours "$B" --ours-json "$OUT/ours-interleaved-bwd.json" --json "$OUT/peers-interleaved-bwd.json" ;;
    interleaved-per-call)
      # the same, each call timed alone from an idle stream (host queueing included), for comparison with back-to-back
      run interleaved-fwd-per-call 400 bench.log python3 bench/peers/sdpa_peers.py --grid paper --timing per-call --interleave-ours "$B" --ours-json "$OUT/ours-interleaved-per-call.json" --json "$OUT/peers-interleaved-per-call.json"
      run interleaved-bwd-per-call 400 bench.log python3 bench/peers/sdpa_peers.py --grid paper --timing per-call --backward --interleave-ours "$B" --ours-json "$OUT/ours-interleaved-bwd-per-call.json" --json "$OUT/peers-interleaved-bwd-per-call.json" ;;
    power)
      # SM clock and board power while ours and cuDNN run the d128 full forward (b2 h16 s8k) back to back for a few
      # seconds each: under sustained load the GPU holds its power limit by lowering the clock
      for impl in ours cudnn; do
        nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu --format=csv,noheader,nounits -lms 50 > "$OUT/power-$impl.csv" &
        smi=$!
        if [ $impl = ours ]; then
          run "power $impl" 120 bench.log "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --repeats 1500 --json "$OUT/power-$impl.json"
        else
          run "power $impl" 120 bench.log python3 bench/peers/sdpa_peers.py --batch 2 --heads 16 --seqlen 8192 --hdim 128 --full --backends cudnn --repeats 1500 --json "$OUT/power-$impl.json"
        fi
        kill $smi
      done
      python3 - "$OUT" <<'PY' | tee -a "$OUT/bench.log"
import csv, statistics, sys, os
for impl in ("ours", "cudnn"):
    rows = [r for r in csv.reader(open(os.path.join(sys.argv[1], f"power-{impl}.csv"))) if len(r) == 3]
    busy = [(float(c), float(p), float(t)) for c, p, t in rows if float(p) > 250]
    mid = busy[len(busy) // 4: len(busy) * 3 // 4] or busy
    if mid:
        print(f"power {impl}: {len(mid)} samples under load: SM clock median {statistics.median(c for c, _, _ in mid):.0f} MHz, "
              f"power median {statistics.median(p for _, p, _ in mid):.0f} W, temperature max {max(t for _, _, t in mid):.0f} C")
PY
      ;;
    deterministic) run deterministic 120 bench.log "$B" bench --device cuda --grid paper --hdim 64 128 --seqlen 2048 8192 --backward --deterministic --json "$OUT/deterministic.json" ;;
    ablation-per-call)
      # the ablation with each call timed alone (the clock recovers between calls), to separate the schedule's effect from
      # the 700 W cap's: back to back, the ping-pong switch moved 0–10% between three runs
      run ablation-per-call 200 bench.log "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --ablation --timing per-call --repeats 50 --json "$OUT/ablation-per-call.json" ;;
    ablation2)
      # the same four kernels again, in reverse order, to see how much of a difference is noise
      run ablation2 120 bench.log "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --ablation --repeats 50 --json "$OUT/ablation2.json" ;;
    sweep)
      # forward tile sweep: FLASHATTN_FWD_CONFIG picks the variant (compiled on the fly); SWEEP overrides the list
      for item in ${SWEEP:-"128:n128,s2,q2|128" "128:n128,s2,q1|128" "128:n176,s2,alias|128" "128:n112,s2,q2|128" "64:n128,s2,q2|64" "64:n192,s2,q2|64" "64:n256,s2,q1|64"}; do
        cfg=${item%%|*}; d=${item##*|}; h=$((2048 / d))
        export FLASHATTN_FWD_CONFIG="$cfg"
        run "sweep $cfg" 60 sweep.log "$B" bench --device cuda --batch 2 --heads $h --seqlen 8192 --hdim $d --forward --repeats 30
        run "sweep $cfg causal" 60 sweep.log "$B" bench --device cuda --batch 2 --heads $h --seqlen 8192 --hdim $d --forward --causal --repeats 30
        run "sweep $cfg causal 2k" 60 sweep.log "$B" bench --device cuda --batch 8 --heads $h --seqlen 2048 --hdim $d --forward --causal --repeats 30
      done
      unset FLASHATTN_FWD_CONFIG
      grep -E "^(=== sweep|│ fwd)" "$OUT/sweep.log" ;;
    bwd-sweep)
      # backward variants at d128 and d64, full and causal, 8k: FLASHATTN_BWD_CONFIG picks the variant
      for cfg in ${BWD_SWEEP:-"128:split" "128:exchange" "64:split"}; do
        d=${cfg%%:*}; h=$((2048 / d))
        export FLASHATTN_BWD_CONFIG="$cfg"
        run "bwd $cfg" 60 sweep.log "$B" bench --device cuda --batch 2 --heads $h --seqlen 8192 --hdim $d --backward --repeats 20
        run "bwd $cfg causal" 60 sweep.log "$B" bench --device cuda --batch 2 --heads $h --seqlen 8192 --hdim $d --backward --causal --repeats 20
        run "bwd $cfg 2k" 60 sweep.log "$B" bench --device cuda --batch 8 --heads $h --seqlen 2048 --hdim $d --backward --repeats 20
      done
      unset FLASHATTN_BWD_CONFIG
      grep -E "^(=== bwd|│ bwd)" "$OUT/sweep.log" ;;
    d256-splitsdp)
      # the d256 backward with Sᵀ and dPᵀ split between the consumers (the default since 2026-11-25) against the
      # variant without the split (FLASHATTN_BWD_CONFIG=256:nosplitsdp): verify the backward grid without it, then
      # time the d256 rows both ways, alternating
      FLASHATTN_BWD_CONFIG=256:nosplitsdp run verify-bwd-nosplitsdp 200 verify.log "$B" verify --device cuda --backward --no-probes
      for round in 1 2; do
        for v in $([ $round = 1 ] && echo "splitsdp nosplitsdp" || echo "nosplitsdp splitsdp"); do
          if [ $v = nosplitsdp ]; then export FLASHATTN_BWD_CONFIG=256:nosplitsdp; else unset FLASHATTN_BWD_CONFIG; fi
          run "bwd d256 $v $round" 120 sweep.log "$B" bench --device cuda --grid paper --backward --hdim 256 --json "$OUT/d256-$v-$round.json"
        done
      done
      unset FLASHATTN_BWD_CONFIG
      grep -E "^(=== bwd d256|│ bwd)" "$OUT/sweep.log" ;;
    fwd-chain)
      # the loop without the overlap, each turn issuing P·V of block n and S of block n-1 back to back
      # (FLASHATTN_FWD_CONFIG …,chain) against the defaults: its kernels' SASS counts (wgmma waits and arrives, local
      # memory), the forward grid verified with it, racecheck on the quick forward cases, then the paper grid both
      # ways, twice, alternating
      CH="64:n192,s3,q2,qregs,chain;128:n128,s2,q2,chain;256:n80,s2,alias,chain"
      rm -rf /tmp/chain-dump
      FLASHATTN_DUMP_DIR=/tmp/chain-dump FLASHATTN_FWD_CONFIG="$CH" run warmup-chain 120 verify.log "$B" warmup
      for f in /tmp/chain-dump/flash_fwd-*.cubin; do
        [ -e "$f" ] || continue
        s=$(cuobjdump --dump-sass "$f" 2>/dev/null)
        printf '%s  %s  HGMMA %d  DEPBAR %d  WG.ARRIVE %d  LDL %d  STL %d\n' "$(basename "$f")" "$(cut -f1 "${f%.cubin}.names" | tr '\n' ' ')" \
          "$(grep -c HGMMA <<<"$s")" "$(grep -c 'WARPGROUP.DEPBAR' <<<"$s")" "$(grep -c 'WARPGROUP.ARRIVE' <<<"$s")" "$(grep -c LDL <<<"$s")" "$(grep -c STL <<<"$s")" >> "$OUT/sass-chain.txt"
      done
      FLASHATTN_FWD_CONFIG="$CH" run verify-fwd-chain 200 verify.log "$B" verify --device cuda --forward --no-probes
      FLASHATTN_FWD_CONFIG="$CH" run racecheck-chain 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --forward --quick --no-probes
      for round in 1 2; do
        for v in $([ $round = 1 ] && echo "default chain" || echo "chain default"); do
          if [ $v = chain ]; then export FLASHATTN_FWD_CONFIG="$CH"; else unset FLASHATTN_FWD_CONFIG; fi
          run "fwd $v $round" 200 sweep.log "$B" bench --device cuda --grid paper --forward --json "$OUT/fwd-$v-$round.json"
        done
      done
      unset FLASHATTN_FWD_CONFIG
      grep -E "^(=== fwd|│ fwd)" "$OUT/sweep.log" ;;
    fwd-short)
      # key blocks for short sequences: d64 with 128-key blocks (192 computes 576 keys for 512, 1152 for 1k) and d256
      # with 64-key blocks (80 computes 560 for 512): verified once, then the d64 and d256 rows of the paper grid,
      # default and variant, twice, alternating
      SV="64:n128,s3,q2,qregs,noov;256:n64,s2,alias"
      FLASHATTN_FWD_CONFIG="$SV" run verify-fwd-short 200 verify.log "$B" verify --device cuda --forward --no-probes
      for round in 1 2; do
        for v in $([ $round = 1 ] && echo "default n128s3 n128s2 n64" || echo "n64 n128s2 n128s3 default"); do
          case $v in
            default) unset FLASHATTN_FWD_CONFIG; dims="64 256" ;;
            n128s3) export FLASHATTN_FWD_CONFIG="64:n128,s3,q2,qregs,noov"; dims=64 ;;
            n128s2) export FLASHATTN_FWD_CONFIG="64:n128,s2,q2,qregs,noov"; dims=64 ;;
            n64) export FLASHATTN_FWD_CONFIG="256:n64,s2,alias"; dims=256 ;;
          esac
          run "fwd $v $round" 200 sweep.log "$B" bench --device cuda --grid paper --forward --hdim $dims --json "$OUT/fwd-$v-$round.json"
        done
      done
      unset FLASHATTN_FWD_CONFIG
      grep -E "^(=== fwd|│ fwd)" "$OUT/sweep.log" ;;
    d128-n176)
      # d128 with 176-key blocks (O staged in Q's buffer, so one Q buffer), with the chained P·V/S order or without
      # the overlap, against the default, d128 rows from 2k, twice, alternating (timing only: verify before adopting)
      for round in 1 2; do
        for v in $([ $round = 1 ] && echo "default n176chain n176noov" || echo "n176noov n176chain default"); do
          case $v in
            default) unset FLASHATTN_FWD_CONFIG ;;
            n176chain) export FLASHATTN_FWD_CONFIG="128:n176,s2,alias,chain" ;;
            n176noov) export FLASHATTN_FWD_CONFIG="128:n176,s2,alias,noov" ;;
          esac
          run "fwd $v $round" 200 sweep.log "$B" bench --device cuda --grid paper --forward --hdim 128 --seqlen 2048 4096 8192 16384 --json "$OUT/fwd-$v-$round.json"
        done
      done
      unset FLASHATTN_FWD_CONFIG
      grep -E "^(=== fwd|│ fwd)" "$OUT/sweep.log" ;;
    d64-m128)
      # the d64 backward with 128 queries per step (FLASHATTN_BWD_CONFIG=64:m128, FlashAttention-3's d64 tile, the
      # default since 2026-12-01) against 64 per step (64:m64): ptxas's registers and spills for it, the d64 rows of the
      # backward grid verified with it (deterministic included), racecheck on a small case, then the d64 paper rows
      # timed both ways, alternating
      export FLASHATTN_BWD_CONFIG=64:m128
      run warmup-m128 120 verify.log "$B" warmup
      run verify-bwd-m128 200 verify.log "$B" verify --device cuda --backward --no-probes --filter d64
      run racecheck-m128 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --backward --quick --no-probes --filter d64
      for round in 1 2; do
        for v in $([ $round = 1 ] && echo "m128 m64" || echo "m64 m128"); do
          export FLASHATTN_BWD_CONFIG=64:$v
          run "bwd d64 $v $round" 120 sweep.log "$B" bench --device cuda --grid paper --backward --hdim 64 --json "$OUT/d64-$v-$round.json"
        done
      done
      unset FLASHATTN_BWD_CONFIG
      grep -E "^(=== bwd d64|│ bwd)" "$OUT/sweep.log" ;;
    ab)
      # the binary in artifacts/device against an earlier build in artifacts/device-old (carry both), on the bench
      # arguments in AB_ARGS (default: the forward paper grid), twice each, alternating who goes first
      OLD="$PWD/artifacts/device-old/flashattn"
      for round in 1 2; do
        for v in $([ $round = 1 ] && echo "new old" || echo "old new"); do
          bin=$B; [ $v = old ] && bin=$OLD
          run "ab $v $round" 300 sweep.log "$bin" bench --device cuda ${AB_ARGS:---grid paper --forward} --json "$OUT/ab-$v-$round.json"
        done
      done
      grep -E "^(=== ab|│ (fwd|bwd))" "$OUT/sweep.log" ;;
    d256-o2)
      # d256 with O staged in two column passes through a buffer of its own instead of Q's (o2): Q is released when the
      # tile's last S is done, so the next tile's Q loads under the epilogue. Verified (d256 cases, short- and long-key
      # variants) and racechecked, then the d256 rows timed: default, o2 with 64-key blocks and the overlap (the short-key
      # variant with its own O buffer) and o2 with 64-key blocks chained, twice, alternating
      O2S="256:n64,s2,o2"; O2C="256:n64,s2,o2,chain"
      FLASHATTN_FWD_CONFIG="$O2S" run verify-fwd-o2 200 verify.log "$B" verify --device cuda --forward --no-probes --filter d256
      FLASHATTN_FWD_CONFIG="$O2C" run verify-fwd-o2chain 200 verify.log "$B" verify --device cuda --forward --no-probes --filter d256
      FLASHATTN_FWD_CONFIG="$O2S" run racecheck-o2 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --forward --quick --no-probes --filter d256
      VARIANTS="default= o2=$O2S o2chain=$O2C" BENCH_ARGS="--grid paper --forward --hdim 256" "$0" variants ;;
    variants)
      # forward/backward variants side by side: VARIANTS="default= chain=64:n128,s3,q2,qregs,chain" (name=FLASHATTN_FWD_CONFIG,
      # empty for the defaults; VARIANT_VAR=FLASHATTN_BWD_CONFIG for the backward), timed on BENCH_ARGS (default: the
      # forward paper grid), twice, the second round in reverse order
      names=(); for item in ${VARIANTS:-default=}; do names+=("$item"); done
      reversed=(); for ((i=${#names[@]}-1; i>=0; i--)); do reversed+=("${names[i]}"); done
      var=${VARIANT_VAR:-FLASHATTN_FWD_CONFIG}
      for round in 1 2; do
        if [ $round = 1 ]; then order=("${names[@]}"); else order=("${reversed[@]}"); fi
        for item in "${order[@]}"; do
          name=${item%%=*}; cfg=${item#*=}
          if [ -n "$cfg" ]; then export "$var=$cfg"; else unset "$var"; fi
          run "variant $name $round" 200 sweep.log "$B" bench --device cuda ${BENCH_ARGS:---grid paper --forward} --json "$OUT/variant-$name-$round.json"
        done
      done
      unset "$var"
      grep -E "^(=== variant|│ (fwd|bwd))" "$OUT/sweep.log" ;;
    fwd-w3)
      # d64 with three consumer warpgroups (w3: 192-row tiles, FlashAttention-3's d64 shape; 160 registers each):
      # ptxas's registers, spills and warnings for it, the d64 forward cases verified with it (Q in registers and
      # from shared memory), racecheck on the quick forward cases, then the d64 paper rows against the default, twice,
      # alternating
      W3="64:n128,s3,q2,qregs,noov,w3"; W3S="64:n128,s3,q2,noov,w3"
      FLASHATTN_FWD_CONFIG="$W3;128:n128,s2,q2,noov" run warmup-w3 120 verify.log "$B" warmup
      FLASHATTN_FWD_CONFIG="$W3S" run warmup-w3s 120 verify.log "$B" warmup
      grep -E "192x|warning" "$OUT/verify.log" | grep -v "d256" | tail -8
      FLASHATTN_FWD_CONFIG="$W3" run verify-fwd-w3 200 verify.log "$B" verify --device cuda --forward --no-probes --filter d64
      FLASHATTN_FWD_CONFIG="$W3S" run verify-fwd-w3s 200 verify.log "$B" verify --device cuda --forward --no-probes --filter d64
      FLASHATTN_FWD_CONFIG="$W3" run racecheck-w3 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --forward --quick --no-probes
      VARIANTS="default= w3=$W3 w3s=$W3S" BENCH_ARGS="--grid paper --forward --hdim 64" "$0" variants ;;
    fwd-w3-default)
      # d64's default since 2026-12-01 (three consumers, 192-row tiles; two under a causal mask below 2k keys), with
      # idle consumers passing their turns: the d64 forward cases verified, racecheck on the quick cases, then the d64
      # paper rows: default, three consumers for every mask (w3all), two consumers for every mask and length (w2)
      run verify-fwd-d64 200 verify.log "$B" verify --device cuda --forward --no-probes --filter d64
      run racecheck-d64 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --forward --quick --no-probes
      VARIANTS="default= w3all=64:n128,s3,q2,qregs,noov,w3 w2=64:n128,s3,q2,qregs,noov" BENCH_ARGS="--grid paper --forward --hdim 64" "$0" variants ;;
    fwd-d128-candidates)
      # d128 tile shapes: three consumers with 64–96-key blocks (160 registers each hold their accumulators), 144/160-key
      # blocks with two Q buffers (O in the tile's own Q buffer; 176 with one Q buffer measured +4..6% at 8k, −8..−16%
      # at 2k: 2026-12-01-h200-2c808e8), with Q in registers (d128: 624 vs 635 TFLOP/s on the H100 once,
      # 2026-11-25, before the later changes; what it saves is shared-memory reads, which the 700 W cap may reward) and
      # FlashAttention-3's own d128 shape (176-key blocks with the intra-warpgroup overlap; 176 was measured only
      # without it). d128 full is the forward's one bar below cuDNN (median 0.98). Each candidate first runs the quick
      # d128 cases (a hang or a gross error costs a minute, not a timing round), then the d128 full paper rows are timed
      # for the default and every candidate, twice, alternating; the full verify and racecheck of the winners is
      # fwd-d128-verify. Then d64 with 64-key blocks at 512–1k (the 1.48 cell against FlashAttention-2). All compile
      # without spills with NVRTC 12.5 (local-sass.sh). Full mask only: causal d128 is at 0.99–1.10 and
      # TileTables.Forward can choose per mask.
      C="${CANDIDATES:-w3n96=128:n96,s2,q1,noov,w3 w3n80=128:n80,s2,q2,noov,w3 w3n64=128:n64,s2,q2,noov,w3 n160=128:n160,s2,q2,alias,noov n160chain=128:n160,s2,q2,alias,chain n144=128:n144,s2,q2,alias,noov qregs=128:n128,s2,q2,noov,qregs n160qregs=128:n160,s2,q2,alias,noov,qregs n176ov=128:n176,s2,q1,alias,ov}"
      ok=""
      for item in $C; do
        FLASHATTN_FWD_CONFIG="${item#*=}" run "verify-quick ${item%%=*}" 60 verify.log "$B" verify --device cuda --forward --quick --no-probes --filter d128
        if tail -n 3 "$OUT/verify.log" | grep -q " 0 failed"; then ok="$ok $item"; else echo "dropped ${item%%=*}: quick verify failed"; fi
      done
      VARIANTS="default= $ok" BENCH_ARGS="--grid paper --forward --hdim 128 --causal false" "$0" variants
      "$0" pack
      FLASHATTN_FWD_CONFIG="64:n64,s4,q2,qregs,noov,w3" run verify-quick-d64-n64 60 verify.log "$B" verify --device cuda --forward --quick --no-probes --filter d64
      VARIANTS="default= n64=64:n64,s4,q2,qregs,noov,w3" BENCH_ARGS="--grid paper --forward --hdim 64 --seqlen 512 1024 --causal false" "$0" variants ;;
    fwd-d128-verify)
      # the winners of fwd-d128-candidates (CANDIDATES="name=override …"): every d128 forward case, then racecheck on
      # the quick cases
      for item in ${CANDIDATES:?CANDIDATES=\"name=128:… …\"}; do
        FLASHATTN_FWD_CONFIG="${item#*=}" run "verify ${item%%=*}" 200 verify.log "$B" verify --device cuda --forward --no-probes --filter d128
        FLASHATTN_FWD_CONFIG="${item#*=}" run "racecheck ${item%%=*}" 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --forward --quick --no-probes --filter d128
      done
      grep -E "FAIL|passed|ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/verify.log" "$OUT/sanitize.log" | tail -12 ;;
    fwd-xt)
      # the cross-tile forward (xt: each tile's first S issued in the turn of the previous tile's last P·V and computed
      # under its epilogue; rewritten 2026-12-01 so that ptxas 12.5 keeps that S in flight: no C75xx, no spills):
      # ptxas's verdict here first (13.0 serialised the first version: C7518), the forward cases verified at d64 (three
      # consumers, as d64's default, and two) and d128 (Q from shared memory and in registers), memcheck and racecheck
      # on the quick cases, then the d64/d128 paper rows against the defaults, twice, alternating. Where it should show:
      # short sequences (a tile of 4–16 key blocks), where both consumers otherwise reach the tile's end together.
      XT="64:n128,s3,q2,qregs,noov,w3,xt;128:n128,s2,q2,noov,xt"; XTQ="128:n128,s2,q2,noov,qregs,xt"; XT2="64:n128,s3,q2,qregs,noov,xt"
      for v in "$XT" "$XTQ" "$XT2"; do FLASHATTN_FWD_CONFIG="$v" run "warmup $v" 120 verify.log "$B" warmup --filter "fwd bf16"; done
      grep -E "cross-tile|C75" "$OUT/verify.log" | sort -u | tail -8
      FLASHATTN_FWD_CONFIG="$XT" run verify-fwd-xt 300 verify.log "$B" verify --device cuda --forward --no-probes --filter "d64"
      FLASHATTN_FWD_CONFIG="$XT" run verify-fwd-xt128 300 verify.log "$B" verify --device cuda --forward --no-probes --filter "d128"
      FLASHATTN_FWD_CONFIG="$XTQ" run verify-fwd-xtq 300 verify.log "$B" verify --device cuda --forward --no-probes --filter "d128"
      FLASHATTN_FWD_CONFIG="$XT2" run verify-fwd-xtw2 300 verify.log "$B" verify --device cuda --forward --no-probes --filter "d64"
      FLASHATTN_FWD_CONFIG="$XT" run memcheck-xt 300 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --forward --quick --no-probes
      FLASHATTN_FWD_CONFIG="$XT" run racecheck-xt 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --forward --quick --no-probes
      grep -E "FAIL|passed|ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/verify.log" "$OUT/sanitize.log" | tail -10
      VARIANTS="default= xt=$XT xtq=$XTQ xtw2=$XT2" BENCH_ARGS="--grid paper --forward --hdim 64 128" "$0" variants
      "$0" pack ;;
    bwd-persist)
      # the persistent backward (FLASHATTN_BWD_CONFIG …:persist: one CTA per SM walking key blocks; the next block's first
      # Q/dO stage and its K/V load under the current one's end): ptxas's registers and spills, the backward grid verified
      # with it (deterministic cases included), memcheck and racecheck on the quick cases, then the backward paper grid
      # against the default, twice, alternating. (ptxas 12.5 locally: the consumers' loop has no local memory; the
      # producer warpgroup, on 24 registers, keeps the walk's state in ~27 local-memory accesses per key block and a
      # few per step, where it mostly waits anyway: local-sass.sh)
      P="64:persist;128:persist;256:persist"
      FLASHATTN_BWD_CONFIG="$P" run warmup-persist 120 verify.log "$B" warmup
      grep -E "persistent" "$OUT/verify.log" | grep -E "compiled|cached|warning" | sort -u | head -12
      FLASHATTN_BWD_CONFIG="$P" run verify-bwd-persist 200 verify.log "$B" verify --device cuda --backward --no-probes
      FLASHATTN_BWD_CONFIG="$P" run memcheck-persist 300 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --backward --quick --no-probes
      FLASHATTN_BWD_CONFIG="$P" run racecheck-persist 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --backward --quick --no-probes
      VARIANT_VAR=FLASHATTN_BWD_CONFIG VARIANTS="default= persist=$P" BENCH_ARGS="--grid paper --backward" "$0" variants ;;
    bwd-breakdown)
      # where a short backward's time goes: Nsight Compute's duration of each of its three kernels (pre-pass: D and
      # the dQ accumulator cleared; main; post-pass: dQ converted) at 512 and 2k tokens, d64 and d128, full
      for d in 64 128; do
        for s in 512 2048; do
          run "bwd-breakdown d$d s$s" 150 ncu.log ncu --kernel-name regex:flash_bwd --launch-skip 6 --launch-count 3 \
            --metrics gpu__time_duration.sum,dram__bytes.sum "$B" bench --device cuda --batch $((16384 / s)) --heads $((2048 / d)) \
            --seqlen $s --hdim $d --backward --warmup 2 --repeats 1 --timing per-call
        done
      done
      grep -E "^=== bwd-breakdown|flash_bwd|gpu__time_duration|dram__bytes" "$OUT/ncu.log" ;;
    bwd-short-profile)
      # why the backward's main kernel runs at ~58% of its long-sequence rate at 512 tokens (d128 full: 324 against ~560
      # TFLOP/s): its SOL, tensor-pipe use, warp stalls and scheduler figures at s512 with the default grid and with the
      # persistent one, and cuDNN's backward kernel on the same shape beside them
      stall_sections="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy --metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum"
      run ncu-bwd512-default 150 ncu.log ncu --kernel-name regex:flash_bwd_kernel --launch-skip 2 --launch-count 1 $stall_sections "$B" bench --device cuda --batch 32 --heads 16 --seqlen 512 --hdim 128 --backward --warmup 2 --repeats 1
      FLASHATTN_BWD_CONFIG="128:persist" run ncu-bwd512-persist 150 ncu.log ncu --kernel-name regex:flash_bwd_kernel --launch-skip 2 --launch-count 1 $stall_sections "$B" bench --device cuda --batch 32 --heads 16 --seqlen 512 --hdim 128 --backward --warmup 2 --repeats 1
      run ncu-bwd512-cudnn 150 ncu.log ncu --kernel-name regex:"cudnn|sdpa|fmha|sm90|bprop|dgrad" --launch-skip 3 --launch-count 3 --section SpeedOfLight --metrics gpu__time_duration.sum python3 -c "
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
q, k, v = (torch.randn(32, 16, 512, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(5):
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        o.backward(torch.ones_like(o))
torch.cuda.synchronize()"
      grep -E "^=== ncu|Duration|gpu__time_duration|Compute \(SM\) Throughput|Memory Throughput|gmma_cycles_active|Issued Warp|No Eligible|Registers|Waves Per SM|Theoretical Occupancy" "$OUT/ncu.log" | head -80 ;;
    ncu)
      sections="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active"
      run ncu-fwd 150 ncu.log ncu --kernel-name regex:flash_fwd --launch-skip 3 --launch-count 1 $sections "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --warmup 3 --repeats 1
      run ncu-bwd 150 ncu.log ncu --kernel-name regex:flash_bwd_kernel --launch-skip 2 --launch-count 1 $sections "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --backward --warmup 2 --repeats 1 ;;
    ncu-stalls)
      # where the d128 full forward's cycles go, ours next to cuDNN's kernel on the same shape (b2 h16 s8k): tensor-pipe
      # utilisation, warp stall reasons, issue slots; first the names of the tensor-pipe metrics this ncu knows
      run ncu-metric-names 60 ncu.log bash -c "ncu --query-metrics --chip gh100 | grep -iE 'gmma|pipe_tensor' | head -40"
      stall_sections="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section InstructionStats --metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_tensor_op_gmma.sum,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active"
      run ncu-fwd-ours 150 ncu.log ncu --kernel-name regex:flash_fwd --launch-skip 3 --launch-count 1 $stall_sections "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --warmup 3 --repeats 1
      run ncu-fwd-cudnn 150 ncu.log ncu --kernel-name regex:"cudnn|sdpa|fmha|sm90" --launch-skip 3 --launch-count 1 $stall_sections python3 -c "
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
q, k, v = (torch.randn(2, 16, 8192, 128, device='cuda', dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(5): torch.nn.functional.scaled_dot_product_attention(q, k, v)
torch.cuda.synchronize()" ;;
    sanitize)
      run memcheck 300 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --quick --no-probes
      run racecheck 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --quick --no-probes ;;
    *) echo "unknown stage $stage" ;;
  esac
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
