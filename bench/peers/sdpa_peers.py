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

--varlen times one packed variable-length batch: lengths from --seqlens, or drawn with Python's random.seed(--seed)
and random.randint(--varlen-min, --varlen-max) --varlen-count times (defaults 0, 64…4096, 64: 147,624 tokens; the
total is printed). Peers: PyTorch's FlashAttention-2 varlen op (torch.ops.aten._flash_attention_forward/_backward on
(total, heads, d) tensors with int32 cu_seqlens on the device; implementation "fa2", rows with "seqlens"), SDPA on
nested jagged tensors ("sdpa-nested", skipped with a note where this torch cannot), and, unless --no-dense, dense
cuDNN/FA2 SDPA at the mean length (batch = count, seqlen = round(total / count)). With --interleave-ours our binary
times the exact same lengths (`bench --varlen --seqlens ...`, and its dense row at the mean). .NET draws other lengths
from the same seed, which is why the list is passed:

    python3 bench/peers/sdpa_peers.py --varlen --causal --hdim 128 --heads 16 --interleave-ours artifacts/device/flashattn \
        --ours-json ours-varlen.json --json peers-varlen.json
"""
import argparse
import datetime
import itertools
import json
import math
import os
import random
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


def varlen_lengths(args):
    """The sequence lengths: --seqlens as given, or drawn as the issue's workload is (random.seed, randint)."""
    if args.seqlens:
        return list(args.seqlens)
    random.seed(args.seed)
    return [random.randint(args.varlen_min, args.varlen_max) for _ in range(args.varlen_count)]


def varlen_flops(lengths, heads, hdim, causal, backward):
    # FlashAttention's count per sequence (4·H·s²·D, halved for causal, ×2.5 backward), summed.
    return sum(4.0 * heads * s * s * hdim / (2 if causal else 1) for s in lengths) * (2.5 if backward else 1.0)


def rotated_sets(set_bytes, cap=4):
    """Input sets to rotate so that no call finds its inputs in L2: more than twice L2, at most half the free memory."""
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    sets = max(1, min(cap, math.ceil(2 * l2 / set_bytes)))
    free, _ = torch.cuda.mem_get_info()
    while sets > 1 and sets * set_bytes > free / 2:
        sets -= 1
    return sets


def run_fa2_varlen(lengths, case, dtype, backward, warmup, repeats, timing):
    """PyTorch's FlashAttention-2 varlen op on packed (total, heads, d) tensors, int32 offsets on the device.
    Returns (times, calls per sample, note); raises RuntimeError/TypeError where this torch's op differs."""
    h, d, causal = case["heads"], case["hdim"], case["causal"]
    total, longest = sum(lengths), max(lengths)
    cu = torch.tensor([0] + list(itertools.accumulate(lengths)), device="cuda", dtype=torch.int32)
    set_bytes = total * h * d * 2 * (8 if backward else 4)
    sets = rotated_sets(set_bytes)
    gen = torch.Generator(device="cuda").manual_seed(1234)
    fwd = torch.ops.aten._flash_attention_forward
    data = []
    for _ in range(sets):
        q, k, v = (torch.randn(total, h, d, device="cuda", dtype=dtype, generator=gen) for _ in range(3))
        # (output, logsumexp, rng_state or philox_seed, unused or philox_offset, debug mask)
        res = fwd(q, k, v, cu, cu, longest, longest, 0.0, causal, False)
        data.append((q, k, v, res, torch.randn_like(res[0]) if backward else None))
    index = [0]
    if not backward:
        def fn():
            q, k, v, _, _ = data[index[0] % sets]
            index[0] += 1
            return fwd(q, k, v, cu, cu, longest, longest, 0.0, causal, False)
    else:
        bwd = torch.ops.aten._flash_attention_backward
        q, k, v, res, grad = data[0]
        bwd(grad, q, k, v, res[0], res[1], cu, cu, longest, longest, 0.0, causal, res[2], res[3])  # the signature, tried once

        def fn():
            q, k, v, res, grad = data[index[0] % sets]
            index[0] += 1
            return bwd(grad, q, k, v, res[0], res[1], cu, cu, longest, longest, 0.0, causal, res[2], res[3])
    times, per_sample = time_ms(fn, warmup, repeats, timing)
    return times, per_sample, f"torch.ops.aten._flash_attention_{'backward' if backward else 'forward'} (FlashAttention-2 varlen), {sets} rotated input sets"


def run_nested_varlen(lengths, case, dtype, backward, warmup, repeats, timing):
    """SDPA on nested jagged tensors (B, heads, j, d): PyTorch's own varlen route. Raises where this torch cannot."""
    h, d, causal = case["heads"], case["hdim"], case["causal"]
    gen = torch.Generator(device="cuda").manual_seed(1234)

    def jagged():
        parts = [torch.randn(s, h, d, device="cuda", dtype=dtype, generator=gen) for s in lengths]
        return torch.nested.nested_tensor(parts, layout=torch.jagged, requires_grad=backward)
    q, k, v = jagged(), jagged(), jagged()
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    if not backward:
        fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
        grad = torch.randn_like(out)
        fn = lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
    fn()
    times, per_sample = time_ms(fn, warmup, repeats, timing)
    return times, per_sample, "F.scaled_dot_product_attention on torch.nested jagged tensors, one input set"


def run_ours_varlen(binary, lengths, case, dtype, backward, warmup, repeats, json_path, timing, dense):
    """Our `flashattn bench --varlen` on the exact lengths (and, unless dense is False, its dense row at the mean)."""
    cmd = [binary, "bench", "--device", "cuda", "--varlen", "--seqlens", *map(str, lengths), "--heads", str(case["heads"]),
           "--hdim", str(case["hdim"]), "--backward" if backward else "--forward", "--warmup", str(warmup),
           "--repeats", str(repeats), "--timing", timing, "--json", json_path]
    if not dense:
        cmd.append("--no-dense")
    if dtype:
        cmd += ["--dtype", dtype]
    if case["causal"]:
        cmd.append("--causal")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shown = " ".join(cmd[:6]) + f" <{len(lengths)} lengths> " + " ".join(cmd[6 + len(lengths):])
        raise RuntimeError(f"{shown} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    with open(json_path) as fh:
        return [r for r in json.load(fh)["rows"] if r.get("implementation") == "flashattn"]


def print_varlen_comparison(ours_rows, rows):
    """Per case: ours varlen, ours dense at the mean, FA2 varlen, nested SDPA, dense SDPA peers, and the ratios."""
    def find(impl, varlen, direction, mask, d):
        for r in ours_rows + rows:
            if (r["implementation"], r["direction"], r["mask"], r["head_dim"]) == (impl, direction, mask, d) and bool(r.get("seqlens")) == varlen:
                return r
        return None
    cases = sorted({(r["direction"], r["mask"], r["head_dim"]) for r in ours_rows + rows})
    cols = [("ours", "flashattn", True), ("ours dense", "flashattn", False), ("fa2 varlen", "fa2", True),
            ("nested", "sdpa-nested", True), ("cudnn dense", "cudnn", False), ("fa2 dense", "fa2", False)]
    print(f"\n{'dir':3} {'mask':6} {'d':>4} " + " ".join(f"{c[0]:>11}" for c in cols) + f" {'ours/fa2 vl':>11} {'vl/dense':>9}  (TFLOP/s)")
    for direction, mask, d in cases:
        got = {name: find(impl, varlen, direction, mask, d) for name, impl, varlen in cols}
        cells = " ".join(f"{got[c[0]]['tflops']:11.1f}" if got[c[0]] else f"{'-':>11}" for c in cols)
        ratio = lambda a, b: f"{got[a]['tflops'] / got[b]['tflops']:.2f}" if got[a] and got[b] and got[b]["tflops"] > 0 else "-"
        print(f"{direction:3} {mask:6} {d:>4} {cells} {ratio('ours', 'fa2 varlen'):>11} {ratio('ours', 'ours dense'):>9}")


def varlen_main(args):
    """The variable-length counterpart of main(): FA2's varlen op, nested SDPA and dense SDPA at the mean (and ours)."""
    lengths = varlen_lengths(args)
    if not lengths or min(lengths) < 1:
        sys.exit("--varlen: expected positive sequence lengths")
    total, count = sum(lengths), len(lengths)
    mean = int(total / count + 0.5)  # half away from zero, as flashattn bench rounds the dense comparison
    how = "given" if args.seqlens else f"random.seed({args.seed}), randint({args.varlen_min}, {args.varlen_max}) x {count}"
    print(f"varlen: {count} sequences ({how}), {min(lengths)}…{max(lengths)} tokens, {total} in all, mean {mean}")
    causals = [True] if args.causal else [False] if args.full else [False, True]
    cases = [dict(heads=args.heads or 2048 // d, hdim=d, causal=c) for d in args.hdim for c in causals]
    dtype = DTYPES[args.dtype]
    props = torch.cuda.get_device_properties(0)
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True).stdout.strip().splitlines()
    commit = os.environ.get("FLASHATTN_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    versions = f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    rows, ours_rows = [], []
    case_json = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flashattn-case-{os.getpid()}.json")
    print(f"{props.name}: varlen, {args.dtype}, {args.timing}, {'bwd' if args.backward else 'fwd'}")
    print(f"{'impl':6} {'dir':3} {'mask':6} {'b':>3} {'s':>6} {'h':>3} {'d':>4} {'ms':>9} {'TFLOP/s':>8}")

    def row(impl, case, times, per_sample, batch, seqlen, f, note, varlen):
        med = statistics.median(times)
        r = {
            "implementation": impl, "device": "cuda", "device_name": props.name,
            "sm_count": props.multi_processor_count, "compute_capability": f"{props.major}.{props.minor}",
            "driver_version": driver[0] if driver else None, "commit": commit, "date": now,
            "dtype": args.dtype, "batch": batch, "seqlen_q": seqlen, "seqlen_k": seqlen,
            "heads_q": case["heads"], "heads_k": case["heads"], "head_dim": case["hdim"],
            "mask": "causal" if case["causal"] else "full", "direction": "bwd" if args.backward else "fwd",
            "time_ms_median": med, "time_ms_min": min(times), "time_ms_max": max(times),
            "flops": f, "tflops": f / med / 1e9, "repeats": len(times), "timing": args.timing, "calls_per_sample": per_sample,
            "notes": f"{versions}, {note}",
        }
        if varlen:
            r["seqlens"] = lengths
        return r

    peers = ["fa2-varlen", "sdpa-nested"] + ([] if args.no_dense else list(args.backends))
    for index, case in enumerate(cases):
        order = list(peers)
        if args.interleave_ours:
            order = ["ours"] + order if index % 2 == 0 else order + ["ours"]
        for peer in order:
            if peer == "ours":
                for r in run_ours_varlen(args.interleave_ours, lengths, case, args.dtype, args.backward, args.warmup, args.repeats,
                                         case_json, args.timing, dense=not args.no_dense):
                    ours_rows.append(r)
                    print_row("ours", r)
                continue
            try:
                if peer == "fa2-varlen":
                    times, per_sample, note = run_fa2_varlen(lengths, case, dtype, args.backward, args.warmup, args.repeats, args.timing)
                    r = row("fa2", case, times, per_sample, count, max(lengths), varlen_flops(lengths, case["heads"], case["hdim"], case["causal"], args.backward), note, True)
                elif peer == "sdpa-nested":
                    times, per_sample, note = run_nested_varlen(lengths, case, dtype, args.backward, args.warmup, args.repeats, args.timing)
                    r = row("sdpa-nested", case, times, per_sample, count, max(lengths), varlen_flops(lengths, case["heads"], case["hdim"], case["causal"], args.backward), note, True)
                else:
                    dense = dict(batch=count, seqlen=mean, heads=case["heads"], hdim=case["hdim"], causal=case["causal"])
                    times, per_sample = run_case(dense, peer, dtype, args.backward, args.warmup, args.repeats, args.timing)
                    r = row(peer, case, times, per_sample, count, mean, flops(dense, args.backward), f"dense SDPA at the mean length of {count} sequences", False)
            except (RuntimeError, TypeError, ValueError, AttributeError, NotImplementedError) as e:  # an op this torch lacks or names otherwise
                print(f"{peer:6} skipped {case}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}", file=sys.stderr)
                torch.cuda.empty_cache()
                continue
            rows.append(r)
            print_row(r["implementation"] + ("" if r.get("seqlens") else "*"), r)
            torch.cuda.empty_cache()
    print("(* dense at the mean length)")
    if args.ours or args.interleave_ours:
        earlier = args.ours
        if earlier:
            with open(earlier) as fh:
                doc = json.load(fh)
            ours_rows = doc["rows"] if isinstance(doc, dict) else doc
            # Only rows of this workload: varlen rows with these lengths, dense rows at the mean.
            ours_rows = [r for r in ours_rows if r.get("implementation") == "flashattn" and
                         (r.get("seqlens") == lengths or (not r.get("seqlens") and (r["batch"], r["seqlen_q"]) == (count, mean)))]
        print_varlen_comparison(ours_rows, rows)
    if args.ours_json:
        with open(args.ours_json, "w") as fh:
            json.dump({"schema_version": 1, "note": "flashattn bench --varlen, one case at a time, interleaved with the peers by "
                       "bench/peers/sdpa_peers.py " + " ".join(sys.argv[1:]), "rows": ours_rows}, fh, indent=1)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"schema_version": 1, "note": "bench/peers/sdpa_peers.py " + " ".join(sys.argv[1:]), "rows": rows}, fh, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=["paper", "decode"], help="the FlashAttention-3 paper grid (16k tokens, hidden 2048), or with --decode flashattn bench's decode grid")
    ap.add_argument("--decode", action="store_true", help="decode against a KV cache: --seqlen-q queries per sequence, --kv-len keys")
    ap.add_argument("--kv-len", type=int, nargs="+", default=[4096], help="--decode: keys per sequence")
    ap.add_argument("--seqlen-q", type=int, default=1, help="--decode: queries per sequence")
    ap.add_argument("--heads-k", type=int, help="--decode: KV heads (default: --heads / 4)")
    ap.add_argument("--page-sizes", type=int, nargs="+", default=[0, 16, 256], help="--decode with --interleave-ours: our cache layouts (0: contiguous)")
    ap.add_argument("--append", action="store_true", help="--decode with --interleave-ours: also time ours appending a token per call (pages of 16)")
    ap.add_argument("--varlen", action="store_true", help="one packed variable-length batch: FA2's varlen op, nested SDPA, dense SDPA at the mean length")
    ap.add_argument("--seqlens", type=int, nargs="+", help="--varlen: the sequences' lengths (instead of drawing them)")
    ap.add_argument("--varlen-count", type=int, default=64, help="--varlen: sequences to draw")
    ap.add_argument("--varlen-min", type=int, default=64, help="--varlen: shortest length drawn")
    ap.add_argument("--varlen-max", type=int, default=4096, help="--varlen: longest length drawn")
    ap.add_argument("--seed", type=int, default=0, help="--varlen: random.seed of the draw")
    ap.add_argument("--no-dense", action="store_true", help="--varlen: leave out the dense SDPA (and our dense) rows at the mean length")
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

    if args.varlen:
        if args.decode or args.grid or args.batch:
            ap.error("--varlen: not with --decode, --grid or --batch (the batch is the number of sequences)")
        if args.seqlens and (args.varlen_count, args.varlen_min, args.varlen_max) != (64, 64, 4096):
            ap.error("--seqlens: not with --varlen-count/--varlen-min/--varlen-max")
        if args.varlen_min > args.varlen_max or args.varlen_min < 1 or args.varlen_count < 1:
            ap.error("--varlen-min/--varlen-max/--varlen-count: expected 1 <= min <= max and count >= 1")
        return varlen_main(args)
    if args.seqlens or args.no_dense:
        ap.error("--seqlens and --no-dense go with --varlen")

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
