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

--decode times decoding against a KV cache: --seqlen-q queries (default 1) per sequence attend to --kv-len keys,
GQA with --heads/--heads-k (enable_gqa; a backend without GQA gets K and V expanded to the query heads, noted in the
row). Sets of K/V rotate through more than twice L2, as flashattn bench --decode rotates its caches. With
--interleave-ours our binary times the same shape with each of --page-sizes (0: contiguous) and, with --append, also
appending a token per call:

    python3 bench/peers/sdpa_peers.py --decode --grid decode --interleave-ours artifacts/device/flashattn \
        --ours-json ours-decode.json --json peers-decode.json
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


# The decode grid of flashattn bench --grid decode: (batch, cached tokens), 32/8 heads, d128, one query.
DECODE_GRID = [(1, 4096), (8, 8192), (64, 32768), (1, 8192), (1, 32768), (8, 32768)]


def decode_grid():
    for b, kv in DECODE_GRID:
        yield dict(batch=b, seqlen=1, seqlen_k=kv, heads=32, heads_k=8, hdim=128, causal=False)


def kv_bytes(case, elem=2):
    return 2.0 * case["batch"] * case["seqlen_k"] * case["heads_k"] * case["hdim"] * elem


def flops(case, backward):
    f = 4.0 * case["batch"] * case["heads"] * case["seqlen"] * case.get("seqlen_k", case["seqlen"]) * case["hdim"]
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
    extra = ""
    if row.get("kv_tbps") is not None:
        page = row.get("page_size")
        extra = f" kv {row['seqlen_k']:>6} {row['kv_tbps']:6.2f} TB/s" + (
            "" if page is None else f" {'contiguous' if page == 0 else f'page{page}'}{' +' + str(row['append_length']) if row.get('append_length') else ''}")
    print(f"{name:6} {row['direction']:3} {row['mask']:6} {row['batch']:>3} {row['seqlen_q']:>6} {row['heads_q']:>3} "
          f"{row['head_dim']:>4} {row['time_ms_median']:9.3f} {row['tflops']:8.1f}{extra}", flush=True)


def run_ours_decode(binary, case, dtype, page_size, append, warmup, repeats, json_path, timing):
    """Our `flashattn bench --decode` on one case and page size (a separate process); returns its rows."""
    cmd = [binary, "bench", "--device", "cuda", "--decode", "--batch", str(case["batch"]), "--heads", str(case["heads"]),
           "--heads-k", str(case["heads_k"]), "--seqlen", str(case["seqlen"]), "--kv-len", str(case["seqlen_k"]),
           "--hdim", str(case["hdim"]), "--page-size", str(page_size), "--warmup", str(warmup), "--repeats", str(repeats),
           "--timing", timing, "--json", json_path]
    if append:
        cmd.append("--append")
    if dtype:
        cmd += ["--dtype", dtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    with open(json_path) as fh:
        return [r for r in json.load(fh)["rows"] if r.get("implementation") == "flashattn"]


def run_decode_case(case, backend, dtype, warmup, repeats, timing):
    """SDPA on a decode shape: q (b, heads, seqlen_q, d) against k/v (b, heads_k, seqlen_k, d) views of (b, s, h, d)
    tensors, rotated over sets that span more than twice L2. Returns (times, calls per sample, note)."""
    b, sq, sk, h, hk, d = case["batch"], case["seqlen"], case["seqlen_k"], case["heads"], case["heads_k"], case["hdim"]
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    set_bytes = kv_bytes(case, torch.finfo(dtype).bits // 8) + 2 * b * sq * h * d * 2
    sets = max(1, min(8, math.ceil(2 * l2 / set_bytes)))
    free, _ = torch.cuda.mem_get_info()
    while sets > 1 and sets * set_bytes > free / 2:
        sets -= 1
    gen = torch.Generator(device="cuda").manual_seed(1234)
    data = []
    for _ in range(sets):
        q = torch.randn(b, sq, h, d, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
        k = torch.randn(b, sk, hk, d, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
        v = torch.randn(b, sk, hk, d, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
        data.append((q, k, v))
    note = ""
    with sdpa_kernel([BACKENDS[backend]]):
        try:
            F.scaled_dot_product_attention(*data[0], enable_gqa=hk != h)
            expand = False
        except (RuntimeError, TypeError) as e:  # no GQA in this backend (or this torch): K and V expanded to the query heads
            expand = True
            note = f"; K/V expanded to {h} heads (no GQA: {str(e).splitlines()[0][:80]})"
            data = [(q, k.repeat_interleave(h // hk, dim=1), v.repeat_interleave(h // hk, dim=1)) for q, k, v in data]
        index = [0]

        def fn():
            q, k, v = data[index[0] % sets]
            index[0] += 1
            return F.scaled_dot_product_attention(q, k, v) if expand else F.scaled_dot_product_attention(q, k, v, enable_gqa=hk != h)

        times, per_sample = time_ms(fn, warmup, repeats, timing)
    return times, per_sample, f"{sets} rotated K/V sets{note}"


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
    ap.add_argument("--grid", choices=["paper", "decode"], help="the FlashAttention-3 paper grid (16k tokens, hidden 2048), or with --decode flashattn bench's decode grid")
    ap.add_argument("--decode", action="store_true", help="decode against a KV cache: --seqlen-q queries per sequence, --kv-len keys")
    ap.add_argument("--kv-len", type=int, nargs="+", default=[4096], help="--decode: keys per sequence")
    ap.add_argument("--seqlen-q", type=int, default=1, help="--decode: queries per sequence")
    ap.add_argument("--heads-k", type=int, help="--decode: KV heads (default: --heads / 4)")
    ap.add_argument("--page-sizes", type=int, nargs="+", default=[0, 16, 256], help="--decode with --interleave-ours: our cache layouts (0: contiguous)")
    ap.add_argument("--append", action="store_true", help="--decode with --interleave-ours: also time ours appending a token per call (pages of 16)")
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

    if args.decode or args.grid == "decode":
        if args.backward:
            ap.error("--decode times the forward pass")
        return decode_main(args)

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


def decode_main(args):
    """The decode counterpart of main(): SDPA's backends (and ours, interleaved) on KV-cache shapes."""
    if args.grid == "decode":
        cases = list(decode_grid())
    else:
        heads = args.heads or 32
        cases = [dict(batch=args.batch or 1, seqlen=args.seqlen_q, seqlen_k=kv, heads=heads, heads_k=args.heads_k or max(1, heads // 4),
                      hdim=d, causal=False) for d in args.hdim for kv in args.kv_len]
    props = torch.cuda.get_device_properties(0)
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True).stdout.strip().splitlines()
    commit = os.environ.get("FLASHATTN_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    dtype = DTYPES[args.dtype]
    rows, ours_rows = [], []
    case_json = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flashattn-case-{os.getpid()}.json")
    print(f"{props.name}: decode, {args.dtype}, {args.timing}")
    print(f"{'impl':6} {'dir':3} {'mask':6} {'b':>3} {'s':>6} {'h':>3} {'d':>4} {'ms':>9} {'TFLOP/s':>8}")
    for index, case in enumerate(cases):
        order = list(args.backends)
        if args.interleave_ours:
            order = ["ours"] + order if index % 2 == 0 else order + ["ours"]
        for backend in order:
            if backend == "ours":
                layouts = [(page, 0) for page in args.page_sizes] + ([(16, 1)] if args.append else [])
                for page, append in layouts:
                    for r in run_ours_decode(args.interleave_ours, case, args.dtype, page, append, args.warmup, args.repeats, case_json, args.timing):
                        ours_rows.append(r)
                        print_row("ours", r)
                continue
            try:
                times, per_sample, note = run_decode_case(case, backend, dtype, args.warmup, args.repeats, args.timing)
            except RuntimeError as e:
                print(f"{backend:6} skipped {case}: {str(e).splitlines()[0]}", file=sys.stderr)
                continue
            med = statistics.median(times)
            f = flops(case, False)
            row = {
                "implementation": backend, "device": "cuda", "device_name": props.name,
                "sm_count": props.multi_processor_count, "compute_capability": f"{props.major}.{props.minor}",
                "driver_version": driver[0] if driver else None, "commit": commit, "date": now,
                "dtype": args.dtype, "batch": case["batch"], "seqlen_q": case["seqlen"], "seqlen_k": case["seqlen_k"],
                "heads_q": case["heads"], "heads_k": case["heads_k"], "head_dim": case["hdim"], "mask": "full", "direction": "fwd",
                "time_ms_median": med, "time_ms_min": min(times), "time_ms_max": max(times),
                "flops": f, "tflops": f / med / 1e9, "repeats": len(times), "timing": args.timing, "calls_per_sample": per_sample,
                "kv_cache": True, "kv_bytes": kv_bytes(case), "kv_tbps": kv_bytes(case) / (med * 1e-3) / 1e12,
                "notes": f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {note}",
            }
            rows.append(row)
            print_row(backend, row)
    if ours_rows:
        print(f"\n{'b':>3} {'keys':>6} {'layout':>12} {'ours us':>8} " + " ".join(f"{n + ' us':>9} {'ratio':>6}" for n in args.backends))
        for r in ours_rows:
            peers = {p["implementation"]: p for p in rows if (p["batch"], p["seqlen_q"], p["heads_q"], p["heads_k"], p["head_dim"]) ==
                     (r["batch"], r["seqlen_q"], r["heads_q"], r["heads_k"], r["head_dim"]) and p["seqlen_k"] == r["seqlen_k"] - (r.get("append_length") or 0)}
            layout = ("contiguous" if r.get("page_size") == 0 else f"page{r.get('page_size')}") + (" +1" if r.get("append_length") else "")
            cells = " ".join(f"{peers[n]['time_ms_median'] * 1e3:9.1f} {peers[n]['time_ms_median'] / r['time_ms_median']:6.2f}" if n in peers else f"{'-':>9} {'-':>6}"
                             for n in args.backends)
            print(f"{r['batch']:>3} {r['seqlen_k']:>6} {layout:>12} {r['time_ms_median'] * 1e3:8.1f} {cells}")
    if args.ours_json:
        with open(args.ours_json, "w") as fh:
            json.dump({"schema_version": 1, "note": "flashattn bench --decode, one case at a time, interleaved with the peers by "
                       "bench/peers/sdpa_peers.py " + " ".join(sys.argv[1:]), "rows": ours_rows}, fh, indent=1)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"schema_version": 1, "note": "bench/peers/sdpa_peers.py " + " ".join(sys.argv[1:]), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
