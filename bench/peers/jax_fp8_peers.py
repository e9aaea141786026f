#!/usr/bin/env python3
"""Times cuDNN's fused FP8 attention (through JAX, the peer for our FP8 forward) on the shapes `flashattn bench
--dtype fp8` runs, with the same FLOP count, and writes rows in the bench JSON schema (bench/SCHEMA.md).

cuDNN's FP8 path is reached as JAX's own tests reach it: jax._src.cudnn.fused_attention_stablehlo.dot_product_attention
with use_fp8=True on float8_e4m3fn inputs in (batch, seqlen, heads, head_dim) layout, unit descales. It takes the same
head count for Q, K and V: a GQA case repeats K and V (our kernel reads the shared heads).

    python3 bench/peers/jax_fp8_peers.py --grid paper --json peers-fp8.json
    python3 bench/peers/jax_fp8_peers.py --grid paper --interleave-ours artifacts/device/flashattn \
        --ours-json ours-fp8.json --json peers-fp8.json

With --interleave-ours, our binary times each case right beside cuDNN (who goes first alternates from case to case):
our FP8 kernel, our FP8 end to end (with the quantiser), the quantiser's bandwidth, and our BF16 kernel, so that the
FP8/BF16 ratio of a cell comes from one moment of the GPU.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # our binary shares the GPU's memory
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax._src.cudnn import fused_attention_stablehlo as fa  # noqa: E402

def paper_grid(hdims, causals, seqlens):
    # FlashAttention-3 paper: 16k tokens in all, hidden dimension 2048.
    for d in hdims:
        for causal in causals:
            for s in seqlens:
                yield dict(batch=16384 // s, seqlen=s, heads=2048 // d, heads_k=2048 // d, hdim=d, causal=causal)


def flops(case):
    f = 4.0 * case["batch"] * case["heads"] * case["seqlen"] * case["seqlen"] * case["hdim"]
    return f / 2 if case["causal"] else f


def time_ms(fn, args, warmup, repeats):
    """A batch of calls queued back to back and waited for together, wall time over the batch: JAX offers no device
    events, so the GPU is idle when the clock starts and the batch is long enough (at least 20 calls and 20 ms) for the
    first dispatch's latency to vanish in it."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    lone = (time.perf_counter() - t) * 1e3
    per_sample = max(20, math.ceil(20.0 / lone))
    times = []
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
        t = time.perf_counter()
        for _ in range(per_sample):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t) * 1e3 / per_sample)
    return times, per_sample


def cudnn_fp8(case, warmup, repeats):
    b, s, h, d = case["batch"], case["seqlen"], case["heads"], case["hdim"]
    key = jax.random.PRNGKey(1234)
    kq, kk, kv = jax.random.split(key, 3)
    q, k, v = (jax.random.normal(x, (b, s, h, d), jnp.float32).astype(jnp.float8_e4m3fn) for x in (kq, kk, kv))
    params = {name: jnp.ones((1, 1, 1, 1), jnp.float32) for name in fa.FP8Params.__annotations__}
    mask = fa.MaskType.CAUSAL if case["causal"] else fa.MaskType.NO_MASK
    fn = jax.jit(lambda q, k, v: fa.dot_product_attention(q, k, v, scale=d ** -0.5, mask_type=mask, use_fp8=True, fp8_params=params)[0])
    return time_ms(fn, (q, k, v), warmup, repeats)


def run_ours(binary, case, dtype, warmup, repeats, json_path):
    """Our `flashattn bench` on one case (a separate process); returns all its rows."""
    cmd = [binary, "bench", "--device", "cuda", "--forward", "--dtype", dtype, "--batch", str(case["batch"]),
           "--heads", str(case["heads"]), "--heads-k", str(case["heads_k"]), "--seqlen", str(case["seqlen"]),
           "--hdim", str(case["hdim"]), "--warmup", str(warmup), "--repeats", str(repeats), "--json", json_path]
    if case["causal"]:
        cmd.append("--causal")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    with open(json_path) as fh:
        return json.load(fh)["rows"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=["paper"], help="the FlashAttention-3 paper grid (16k tokens, hidden 2048)")
    ap.add_argument("--seqlen", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--hdim", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--heads", type=int, help="query heads (default: the paper grid's 2048 / head_dim)")
    ap.add_argument("--heads-k", type=int, help="key/value heads for ours (GQA; cuDNN gets K and V repeated)")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--causal", action="store_true", help="causal only (default: both)")
    ap.add_argument("--full", action="store_true", help="full (non-causal) only")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write cuDNN's rows here")
    ap.add_argument("--interleave-ours", metavar="FLASHATTN", help="our binary: time each case with it beside cuDNN")
    ap.add_argument("--ours-json", help="with --interleave-ours: write our rows here")
    args = ap.parse_args()
    causals = [True] if args.causal else [False] if args.full else [False, True]
    if args.grid == "paper":
        cases = list(paper_grid(args.hdim, causals, args.seqlen))
    else:
        cases = [dict(batch=args.batch or max(1, 16384 // s), seqlen=s, heads=args.heads or 2048 // d,
                      heads_k=args.heads_k or args.heads or 2048 // d, hdim=d, causal=c)
                 for d in args.hdim for c in causals for s in args.seqlen]

    device = jax.devices()[0]
    commit = os.environ.get("FLASHATTN_COMMIT", "unknown")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(f"{device.device_kind}, JAX {jax.__version__}: cuDNN FP8 attention beside ours", flush=True)
    rows, ours_rows = [], []
    case_json = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flashattn-fp8-case-{os.getpid()}.json")
    header = f"{'mask':6} {'d':>4} {'b':>3} {'s':>6} {'h':>3} {'cudnn fp8':>9} {'ours fp8':>8} {'ratio':>6} {'e2e':>6} {'bf16':>6} {'fp8/bf16':>8} {'quant TB/s':>10}"
    print(header, flush=True)
    for index, case in enumerate(cases):
        order = ["cudnn", "ours"] if index % 2 else ["ours", "cudnn"]
        result = {}
        for who in order:
            if who == "ours":
                if not args.interleave_ours:
                    continue
                for dtype in ("fp8", "bf16"):
                    for r in run_ours(args.interleave_ours, case, dtype, args.warmup, args.repeats, case_json):
                        ours_rows.append(r)
                        result[(dtype, r["implementation"])] = r
                continue
            try:
                times, per_sample = cudnn_fp8(case, args.warmup, args.repeats)
            except Exception as e:  # a shape cuDNN refuses says so
                print(f"cudnn-fp8 skipped {case}: {str(e).splitlines()[0]}", file=sys.stderr)
                continue
            med = statistics.median(times)
            row = {
                "implementation": "cudnn-fp8", "device": "cuda", "device_name": device.device_kind, "commit": commit, "date": now,
                "dtype": "e4m3", "batch": case["batch"], "seqlen_q": case["seqlen"], "seqlen_k": case["seqlen"],
                "heads_q": case["heads"], "heads_k": case["heads_k"], "head_dim": case["hdim"],
                "mask": "causal" if case["causal"] else "full", "direction": "fwd",
                "time_ms_median": med, "time_ms_min": min(times), "time_ms_max": max(times), "flops": flops(case),
                "tflops": flops(case) / med / 1e9, "repeats": len(times), "timing": "back-to-back", "calls_per_sample": per_sample,
                "notes": f"JAX {jax.__version__} cuDNN fused attention, use_fp8=True, unit descales"
                         + (f"; K and V repeated to {case['heads']} heads" if case["heads_k"] != case["heads"] else ""),
            }
            rows.append(row)
            result["cudnn"] = row
        get = lambda key: result.get(key, {}).get("tflops", float("nan"))
        fp8, bf16 = get(("fp8", "flashattn")), get(("bf16", "flashattn"))
        quant = result.get(("fp8", "flashattn (fp8 quantiser)"), {})
        q_text = f"{quant.get('bandwidth_tbps', float('nan')):.2f} ({100 * quant.get('bandwidth_tbps', float('nan')) / quant.get('copy_tbps', float('nan')):.0f}%)" if quant else "-"
        cud = result.get("cudnn", {}).get("tflops", float("nan"))
        print(f"{'causal' if case['causal'] else 'full':6} {case['hdim']:>4} {case['batch']:>3} {case['seqlen']:>6} {case['heads']:>3} "
              f"{cud:9.1f} {fp8:8.1f} {fp8 / cud:6.2f} {get(('fp8', 'flashattn (fp8 end to end)')):6.1f} {bf16:6.1f} {fp8 / bf16:8.2f} {q_text:>10}", flush=True)
    if args.ours_json:
        with open(args.ours_json, "w") as fh:
            json.dump({"schema_version": 1, "note": "flashattn bench (fp8 and bf16), one case at a time, interleaved with cuDNN FP8 by "
                       "bench/peers/jax_fp8_peers.py " + " ".join(sys.argv[1:]), "rows": ours_rows}, fh, indent=1)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"schema_version": 1, "note": "bench/peers/jax_fp8_peers.py " + " ".join(sys.argv[1:]), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
