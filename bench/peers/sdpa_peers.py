#!/usr/bin/env python3
"""Times PyTorch's scaled_dot_product_attention with its cuDNN and FlashAttention-2 backends on exactly the
shapes `flashattn bench` runs, with the same FLOP count, and writes rows in the bench JSON schema
(bench/SCHEMA.md) so `flashattn bench --compare` and `flashattn report` can put them beside ours.

Tensors are laid out (batch, seqlen, heads, head_dim) like ours and handed to SDPA as (batch, heads, seqlen,
head_dim) views, so every implementation reads the same memory layout.

    python3 bench/peers/sdpa_peers.py --grid paper --dtype bf16 --json peers.json
    python3 bench/peers/sdpa_peers.py --seqlen 8192 --hdim 128 --heads 16 --batch 2 --causal --backward
    python3 bench/peers/sdpa_peers.py --grid paper --interleave-ours artifacts/device/flashattn \
        --ours-json ours.json --json peers.json

With --interleave-ours, our binary times each case right beside the peers (which goes first alternates from case
to case), so ours and theirs meet the GPU in the same state: clocks and temperature drift over a grid, and a grid
of ours followed by a grid of theirs compares different moments.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "fa2": SDPBackend.FLASH_ATTENTION}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def paper_grid(hdims, causals):
    # FlashAttention-3 paper: 16k tokens in all, hidden dimension 2048.
    for d in hdims:
        for causal in causals:
            for s in (512, 1024, 2048, 4096, 8192, 16384):
                yield dict(batch=16384 // s, seqlen=s, heads=2048 // d, hdim=d, causal=causal)


def flops(case, backward):
    f = 4.0 * case["batch"] * case["heads"] * case["seqlen"] * case["seqlen"] * case["hdim"]
    if case["causal"]:
        f /= 2
    return f * (2.5 if backward else 1.0)


# Back-to-back timing: calls per sample so that a sample lasts about this long (the rule of flashattn bench,
# BenchSettings.CallsPerSample).
BATCH_TARGET_MS, MAX_BATCH_CALLS = 1.0, 50


def calls_per_sample(call_ms):
    return max(1, min(MAX_BATCH_CALLS, math.ceil(BATCH_TARGET_MS / call_ms))) if call_ms > 0 else MAX_BATCH_CALLS


def time_lone_call(fn):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def time_ms(fn, warmup, repeats, timing="per-call"):
    """Per-call: events around one call from an idle stream (host time to queue it included). Back-to-back: events
    around a batch of calls queued behind an untimed lead call that is still running, divided by the batch size (the
    host's queueing hidden while it is shorter than a call), as flashattn bench --timing back-to-back does.
    Returns (times per call in ms, calls per sample)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    if timing == "per-call":
        return [time_lone_call(fn) for _ in range(repeats)], 1
    per_sample = calls_per_sample(min(time_lone_call(fn) for _ in range(3)))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        fn()  # the lead call
        start.record()
        for _ in range(per_sample):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / per_sample)
    return times, per_sample


def gemm_tflops(dtype, n=8192, repeats=20):
    """The practical ceiling: a dense n^3 matrix product through cuBLAS, median of timed runs, random inputs."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    times, _ = time_ms(lambda: a @ b, 5, repeats)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def print_comparison(ours, peer_rows):
    """One table: our TFLOP/s beside each peer's on the same shape, mask and direction, and the ratios. `ours` is
    a bench JSON path or a list of rows."""
    if isinstance(ours, str):
        with open(ours) as fh:
            doc = json.load(fh)
        ours = doc["rows"] if isinstance(doc, dict) else doc
    key = lambda r: (r["direction"], r["mask"], r["head_dim"], r["batch"], r["seqlen_q"], r["seqlen_k"], r["heads_q"], r["heads_k"], r["dtype"], r.get("timing") or "per-call")
    peers = {}
    for r in peer_rows:
        peers.setdefault(key(r), {})[r["implementation"]] = r["tflops"]
    names = sorted({r["implementation"] for r in peer_rows})
    print(f"\n{'dir':3} {'mask':6} {'d':>4} {'b':>3} {'s':>6} {'ours':>7} " + " ".join(f"{n:>7} {'ratio':>6}" for n in names))
    for r in ours:
        if r.get("implementation") != "flashattn" or key(r) not in peers:
            continue
        cells = " ".join(f"{peers[key(r)].get(n, float('nan')):7.1f} {r['tflops'] / peers[key(r)].get(n, float('nan')):6.2f}" for n in names)
        print(f"{r['direction']:3} {r['mask']:6} {r['head_dim']:>4} {r['batch']:>3} {r['seqlen_q']:>6} {r['tflops']:7.1f} {cells}")


def print_row(name, row):
    print(f"{name:6} {row['direction']:3} {row['mask']:6} {row['batch']:>3} {row['seqlen_q']:>6} {row['heads_q']:>3} "
          f"{row['head_dim']:>4} {row['time_ms_median']:9.3f} {row['tflops']:8.1f}", flush=True)


def run_ours(binary, case, dtype, backward, warmup, repeats, json_path, timing, device="cuda"):
    """Our `flashattn bench` on one case (a separate process); returns its rows (implementation "flashattn")."""
    cmd = [binary, "bench", "--device", device, "--batch", str(case["batch"]), "--heads", str(case["heads"]),
           "--seqlen", str(case["seqlen"]), "--hdim", str(case["hdim"]), "--backward" if backward else "--forward",
           "--warmup", str(warmup), "--repeats", str(repeats), "--timing", timing, "--json", json_path]
    if dtype:
        cmd += ["--dtype", dtype]
    if case["causal"]:
        cmd.append("--causal")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    with open(json_path) as fh:
        return [r for r in json.load(fh)["rows"] if r.get("implementation") == "flashattn"]


def run_case(case, backend, dtype, backward, warmup, repeats, timing):
    b, s, h, d = case["batch"], case["seqlen"], case["heads"], case["hdim"]
    gen = torch.Generator(device="cuda").manual_seed(1234)
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=dtype, generator=gen).requires_grad_(backward) for _ in range(3))
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    with sdpa_kernel([BACKENDS[backend]]):
        if not backward:
            fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=case["causal"])
        else:
            out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=case["causal"])
            grad = torch.randn_like(out)
            fn = lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
        return time_ms(fn, warmup, repeats, timing)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=["paper"], help="the FlashAttention-3 paper grid (16k tokens, hidden 2048)")
    ap.add_argument("--seqlen", type=int, default=4096)
    ap.add_argument("--hdim", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--heads", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--causal", action="store_true", help="causal only (default with --grid: both)")
    ap.add_argument("--full", action="store_true", help="full (non-causal) only")
    ap.add_argument("--backward", action="store_true", help="time the backward pass instead of the forward")
    ap.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    ap.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30, help="timed samples per case")
    ap.add_argument("--timing", choices=["back-to-back", "per-call"], default="back-to-back",
                    help="back-to-back: events around a batch of calls queued behind a running one, per call (default); "
                         "per-call: events around one call from an idle stream, host overhead included")
    ap.add_argument("--json", help="write rows here")
    ap.add_argument("--ours", help="our bench JSON (flashattn bench --json) from the same machine: print ours, theirs and the ratios")
    ap.add_argument("--interleave-ours", metavar="FLASHATTN", help="our flashattn binary: time each case with it right beside the peers, print the ratios")
    ap.add_argument("--ours-json", help="with --interleave-ours: write our rows here")
    args = ap.parse_args()
    if args.ours_json and not args.interleave_ours:
        ap.error("--ours-json goes with --interleave-ours")
    if args.ours and args.interleave_ours:
        ap.error("--ours compares with an earlier run of ours; --interleave-ours times ours in this one: give one")

    causals = [True] if args.causal else [False] if args.full else [False, True]
    if args.grid == "paper":
        cases = list(paper_grid(args.hdim, causals))
    else:
        cases = [dict(batch=args.batch or max(1, 16384 // args.seqlen), seqlen=args.seqlen,
                      heads=args.heads or 2048 // d, hdim=d, causal=c) for d in args.hdim for c in causals]

    props = torch.cuda.get_device_properties(0)
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True).stdout.strip().splitlines()
    gemm = gemm_tflops(DTYPES[args.dtype])
    print(f"{props.name}: dense {args.dtype} GEMM 8192^3 at {gemm:.0f} TFLOP/s (the ceiling line of the charts)")
    commit = os.environ.get("FLASHATTN_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rows, ours_rows = [], []
    case_json = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flashattn-case-{os.getpid()}.json")
    print(f"{'impl':6} {'dir':3} {'mask':6} {'b':>3} {'s':>6} {'h':>3} {'d':>4} {'ms':>9} {'TFLOP/s':>8}")
    for index, case in enumerate(cases):
        order = list(args.backends)
        if args.interleave_ours:
            order = ["ours"] + order if index % 2 == 0 else order + ["ours"]
        for backend in order:
            if backend == "ours":
                for r in run_ours(args.interleave_ours, case, args.dtype, args.backward, args.warmup, args.repeats, case_json, args.timing):
                    ours_rows.append(r)
                    print_row("ours", r)
                continue
            try:
                times, per_sample = run_case(case, backend, DTYPES[args.dtype], args.backward, args.warmup, args.repeats, args.timing)
            except RuntimeError as e:  # a backend that does not support the shape says so
                print(f"{backend:6} skipped {case}: {str(e).splitlines()[0]}", file=sys.stderr)
                continue
            med = statistics.median(times)
            f = flops(case, args.backward)
            row = {
                "implementation": backend, "device": "cuda", "device_name": props.name,
                "sm_count": props.multi_processor_count, "compute_capability": f"{props.major}.{props.minor}",
                "driver_version": driver[0] if driver else None, "gemm_tflops": gemm, "commit": commit, "date": now,
                "dtype": args.dtype, "batch": case["batch"], "seqlen_q": case["seqlen"], "seqlen_k": case["seqlen"],
                "heads_q": case["heads"], "heads_k": case["heads"], "head_dim": case["hdim"],
                "mask": "causal" if case["causal"] else "full", "direction": "bwd" if args.backward else "fwd",
                "time_ms_median": med, "time_ms_min": min(times), "time_ms_max": max(times),
                "flops": f, "tflops": f / med / 1e9, "repeats": len(times), "timing": args.timing, "calls_per_sample": per_sample,
                "notes": f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
            }
            rows.append(row)
            print_row(backend, row)
    if args.ours or args.interleave_ours:
        print_comparison(args.ours or ours_rows, rows)
    if args.ours_json:
        with open(args.ours_json, "w") as fh:
            json.dump({"schema_version": 1, "note": "flashattn bench, one case at a time, interleaved with the peers by "
                       "bench/peers/sdpa_peers.py " + " ".join(sys.argv[1:]), "rows": ours_rows}, fh, indent=1)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"schema_version": 1, "note": "bench/peers/sdpa_peers.py " + " ".join(sys.argv[1:]), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
