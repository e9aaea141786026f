#!/usr/bin/env bash
# The GPU checks, run on the device machine (see CONTRIBUTING.md): publish the AOT binary here first
# (scripts/publish-device.sh), then through the device tool with carry ["artifacts/device"]:
#   bash scripts/device-check.sh info warmup sass verify-quick verify-fwd verify-bwd sanitize interleaved
#   bash scripts/device-check.sh warmup verify-decode example-decode   (then: warmup sanitize-decode; warmup bench-decode bench-decode-forward pack)
#   bash scripts/device-check.sh warmup verify-varlen sanitize-varlen verify-bwd
# Each stage writes a log under $OUT (the device tool brings back at most 8 files) and goes on after a failure; hangs
# are cut by per-stage timeouts. The last lines printed are a summary. One-off studies live in scripts/experiments/.
set -u
B="$PWD/artifacts/device/flashattn"
export OUT="${OUT:-/tmp/flashattn-out}"
mkdir -p "$OUT"
export FLASHATTN_CACHE_DIR="${FLASHATTN_CACHE_DIR:-/tmp/flashattn-cache}"
export FLASHATTN_DUMP_DIR="${FLASHATTN_DUMP_DIR:-/tmp/flashattn-dump}"
# The commit the binary was published from (publish-device.sh writes it; the device copy's .git can be stale).
export FLASHATTN_COMMIT="${FLASHATTN_COMMIT:-$(cat "$PWD/artifacts/device/COMMIT" 2>/dev/null || echo unknown)}"
export PYTHONUNBUFFERED=1
PEERS=bench/peers/sdpa_peers.py
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
      # every variant, the ablation and the probes compiled by the device's NVRTC (registers, spills, C75xx warnings)
      run warmup 300 info.log "$B" warmup --probes --ablations --jobs 16 ;;
    sass)
      # per cubin of the warm-up: tensor-core instructions and local memory; the SASS around each LDL/STL in sass-spills.txt
      for f in "$FLASHATTN_DUMP_DIR"/*.cubin; do
        [ -e "$f" ] || continue
        s=$(cuobjdump --dump-sass "$f" 2>/dev/null)
        printf '%-40s HGMMA %5d  QGMMA %5d  LDL %4d  STL %4d  %s\n' "$(basename "$f")" "$(grep -c HGMMA <<<"$s")" \
          "$(grep -c QGMMA <<<"$s")" "$(grep -c 'LDL' <<<"$s")" "$(grep -c 'STL' <<<"$s")" "$(cut -f1 "${f%.cubin}.names" | head -1)"
        if grep -qE 'LDL|STL' <<<"$s"; then
          { echo "=== $(basename "$f") $(cut -f1 "${f%.cubin}.names" | tr '\n' ' ')"
            grep -nE -B8 -A3 'LDL|STL' <<<"$s" | grep -vE '^\s*$' | head -400; } >> "$OUT/sass-spills.txt"
        fi
      done > /tmp/sass.log 2>&1
      { echo "=== sass (per cubin: HGMMA, QGMMA, local loads/stores)"; cat /tmp/sass.log; } >> "$OUT/info.log"
      summary+=("sass: $(grep -c cubin /tmp/sass.log) cubins, $(awk '$7 > 0 || $9 > 0' /tmp/sass.log | grep -c cubin) with local memory")
      cat /tmp/sass.log ;;
    verify-quick) run verify-quick 90 verify.log "$B" verify --device cuda --quick ;;
    verify-fwd) run verify-fwd 200 verify.log "$B" verify --device cuda --forward --no-probes ;;
    verify-bwd) run verify-bwd 200 verify.log "$B" verify --device cuda --backward --no-probes ;;
    run-gpu) run run-gpu 120 verify.log python3 scripts/numpy_attention_check.py --flashattn "$B" --device cuda ;;
    sanitize)
      run memcheck 300 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --quick --no-probes
      run racecheck 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --quick --no-probes ;;
    example)
      # the README's training-step example (AOT-published to artifacts/example; carry it too)
      run example 300 verify.log artifacts/example/GpuTrainingStep ;;
    verify-fp8) run verify-fp8 300 verify.log "$B" verify --device cuda --forward --filter fp8 ;;
    sanitize-fp8)
      run memcheck-fp8 300 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --quick --no-probes --filter fp8
      run racecheck-fp8 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --quick --no-probes --filter fp8 ;;
    fp8-peers)
      # ours (FP8 kernel, FP8 end to end, the quantiser's bandwidth, BF16) and cuDNN's FP8 case by case; FP8_ARGS narrows the grid
      run fp8-peers 580 bench.log python3 bench/peers/jax_fp8_peers.py ${FP8_ARGS:---grid paper} --interleave-ours "$B" --ours-json "$OUT/ours-fp8.json" --json "$OUT/peers-fp8.json" ;;
    fp8-gqa)
      # the issue's grouped-query shape (b1, 64 query / 8 KV heads, d128) at 8k and 32k, ours beside cuDNN FP8
      run fp8-gqa 300 bench.log python3 bench/peers/jax_fp8_peers.py --batch 1 --heads 64 --heads-k 8 --hdim 128 --seqlen 8192 32768 --interleave-ours "$B" --ours-json "$OUT/ours-fp8-gqa.json" --json "$OUT/peers-fp8-gqa.json" ;;
    accuracy-gpu) run accuracy-gpu 300 bench.log "$B" accuracy --device cuda --json "$OUT/accuracy-gpu.json" ;;
    verify-varlen) run verify-varlen 300 verify.log "$B" verify --device cuda --varlen ;;
    sanitize-varlen)
      run memcheck-varlen 300 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --varlen --quick
      run racecheck-varlen 300 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --varlen --quick ;;
    bench-varlen)
      # the issue's workload (64 sequences, lengths uniform in 64…4096 from Python's random.seed(0)), causal d128 16 heads,
      # ours (varlen, and dense at the mean length) beside PyTorch's FlashAttention-2 varlen op, case by case
      run bench-varlen-fwd 200 bench.log python3 "$PEERS" --varlen --causal --hdim 128 --heads 16 --repeats ${REPEATS:-15} \
        --interleave-ours "$B" --ours-json "$OUT/ours-varlen-fwd.json" --json "$OUT/peers-varlen-fwd.json"
      run bench-varlen-bwd 200 bench.log python3 "$PEERS" --varlen --causal --hdim 128 --heads 16 --backward --repeats ${REPEATS:-15} \
        --interleave-ours "$B" --ours-json "$OUT/ours-varlen-bwd.json" --json "$OUT/peers-varlen-bwd.json" ;;
    bench-varlen-grid)
      # full and causal at d64/d128/d256 (heads 2048/d), forward and backward
      run bench-varlen-grid-fwd 240 bench.log python3 "$PEERS" --varlen --hdim 64 128 256 --repeats ${REPEATS:-10} \
        --interleave-ours "$B" --ours-json "$OUT/ours-varlen-grid-fwd.json" --json "$OUT/peers-varlen-grid-fwd.json"
      run bench-varlen-grid-bwd 240 bench.log python3 "$PEERS" --varlen --hdim 64 128 256 --backward --repeats ${REPEATS:-10} \
        --interleave-ours "$B" --ours-json "$OUT/ours-varlen-grid-bwd.json" --json "$OUT/peers-varlen-grid-bwd.json" ;;
    verify-cp-sim) run verify-cp-sim 120 verify.log "$B" verify --device cuda --context-parallel-sim 2 ;;
    verify-decode)
      # the decode family: its probes, the KV-cache grid (contiguous/paged, append, splits, broken contracts), decode-shaped forwards
      run verify-decode 400 verify.log "$B" verify --device cuda --decode ;;
    sanitize-decode)
      run memcheck-decode 270 sanitize.log compute-sanitizer --tool memcheck "$B" verify --device cuda --decode --quick
      run racecheck-decode 270 sanitize.log compute-sanitizer --tool racecheck "$B" verify --device cuda --decode --quick ;;
    bench-decode)
      # ours (contiguous, pages of 16 and 256, appending) beside cuDNN and FlashAttention-2 case by case on the decode grid
      run bench-decode 480 bench.log python3 $PEERS --decode --grid decode --append --interleave-ours "$B" --ours-json "$OUT/ours-decode.json" --json "$OUT/peers-decode.json" ;;
    bench-decode-forward)
      # the plain forward on the issue's decode shapes, with and without its routing to the decode kernel
      for shape in "1 4096" "8 8192" "64 32768"; do
        read -r b k <<<"$shape"
        run "forward-decode-b$b" 90 bench.log "$B" bench --device cuda --forward --batch "$b" --heads 32 --heads-k 8 --hdim 128 --seqlen 1 --seqlen-k "$k" --json "$OUT/forward-decode-b$b.json"
        run "forward-unrouted-b$b" 90 bench.log env FLASHATTN_FWD_DECODE=off "$B" bench --device cuda --forward --batch "$b" --heads 32 --heads-k 8 --hdim 128 --seqlen 1 --seqlen-k "$k" --json "$OUT/forward-unrouted-b$b.json"
      done ;;
    example-decode)
      # the generation loop (published beside the CLI by publish-device.sh): greedy tokens against the CPU's, tokens/s
      run example-decode 300 verify.log artifacts/device/examples/GpuDecode ;;
    bench) run bench 480 bench.log "$B" bench --device cuda --grid paper --json "$OUT/ours.json" ;;
    peers)
      run peers-fwd 300 bench.log python3 $PEERS --grid paper --json "$OUT/peers.json" --ours "$OUT/ours.json"
      run peers-bwd 300 bench.log python3 $PEERS --grid paper --backward --json "$OUT/peers-bwd.json" --ours "$OUT/ours.json" ;;
    interleaved)
      # ours and the peers case by case, alternating who goes first: ratios that do not depend on clock drift
      run interleaved-fwd 400 bench.log python3 $PEERS --grid paper --interleave-ours "$B" --ours-json "$OUT/ours-interleaved.json" --json "$OUT/peers-interleaved.json"
      run interleaved-bwd 400 bench.log python3 $PEERS --grid paper --backward --interleave-ours "$B" --ours-json "$OUT/ours-interleaved-bwd.json" --json "$OUT/peers-interleaved-bwd.json" ;;
    interleaved-per-call)
      # the same with each call timed alone from an idle stream (host queueing included)
      run interleaved-fwd-per-call 400 bench.log python3 $PEERS --grid paper --timing per-call --interleave-ours "$B" --ours-json "$OUT/ours-interleaved-per-call.json" --json "$OUT/peers-interleaved-per-call.json"
      run interleaved-bwd-per-call 400 bench.log python3 $PEERS --grid paper --timing per-call --backward --interleave-ours "$B" --ours-json "$OUT/ours-interleaved-bwd-per-call.json" --json "$OUT/peers-interleaved-bwd-per-call.json" ;;
    ablation)
      # the paper's ablation (d128 full, b2 h16 s8k): the default and each of FlashAttention-3's ideas switched
      run ablation 300 bench.log "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --ablation --json "$OUT/ablation.json" ;;
    deterministic)
      run deterministic 120 bench.log "$B" bench --device cuda --grid paper --hdim 64 128 --seqlen 2048 8192 --backward --deterministic --json "$OUT/deterministic.json" ;;
    ncu)
      # Nsight Compute's speed-of-light, stall and tensor-pipe figures of the d128 forward and backward (b2 h16 s8k)
      sections="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --metrics sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active"
      run ncu-fwd 150 ncu.log ncu --clock-control none --kernel-name regex:flash_fwd --launch-skip 3 --launch-count 1 $sections "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --forward --warmup 3 --repeats 1
      run ncu-bwd 150 ncu.log ncu --clock-control none --kernel-name regex:flash_bwd_kernel --launch-skip 2 --launch-count 1 $sections "$B" bench --device cuda --batch 2 --heads 16 --seqlen 8192 --hdim 128 --backward --warmup 2 --repeats 1 ;;
    record)
      # a results folder's worth in one call: the checks, then ours beside the peers case by case, the JSON packed
      "$0" info warmup sass verify-quick verify-fwd run-gpu sanitize interleaved ablation verify-bwd deterministic example pack
      exit 0 ;;
    pack)
      # the JSON written so far into one archive (json-1.tgz, json-2.tgz, …): the device tool brings back 8 files
      n=1; while [ -e "$OUT/json-$n.tgz" ]; do n=$((n + 1)); done
      if ls "$OUT"/*.json >/dev/null 2>&1; then (cd "$OUT" && tar czf "json-$n.tgz" ./*.json && rm -f ./*.json); fi ;;
    *) echo "unknown stage $stage (see the case list in $0)" ;;
  esac
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
