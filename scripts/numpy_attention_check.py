#!/usr/bin/env python3
"""Checks `flashattn run` against NumPy's own attention on the same .npy files.

Makes random q/k/v files with NumPy (float32 '<f4', float16 '<f2', bfloat16 bits as uint16 '<u2' and as raw '|V2'),
runs `flashattn run` on them, computes attention in float64 with NumPy from the very same (already rounded) inputs,
and prints the max abs error of O and of the log-sum-exp for each case. Exits 1 if an error exceeds its tolerance.

Needs NumPy (Debian: apt-get update && apt-get install -y python3-numpy, then run it with /usr/bin/python3):
    /usr/bin/python3 scripts/numpy_attention_check.py
    /usr/bin/python3 scripts/numpy_attention_check.py --flashattn artifacts/device/flashattn --keep /tmp/npy-check
    python3 scripts/numpy_attention_check.py --flashattn artifacts/device/flashattn --device cuda   # the GPU kernels
    python3 scripts/numpy_attention_check.py --flashattn artifacts/device/flashattn --device cuda --fp8   # run --dtype fp8
    python3 scripts/numpy_attention_check.py --flashattn artifacts/device/flashattn --device cuda --cu-seqlens   # packed varlen
"""
import argparse, os, shlex, subprocess, sys, tempfile
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tolerances on max |O - O_float64|: a few units of the output type's rounding (outputs are O(1)).
TOLERANCE = {"float32": 2e-5, "float16": 2e-3, "bf16-u2": 1.6e-2, "bf16-V2": 1.6e-2}
# The GPU kernels round P to the input type before P·V (as FlashAttention does) and use exp2 in float32: a little
# more error in O, and a log-sum-exp good to about 1e-5 relative.
TOLERANCE_CUDA = {"float16": 4e-3, "bf16-u2": 2.5e-2, "bf16-V2": 2.5e-2}
LSE_TOLERANCE = {"cpu": 1e-4, "cuda": 1e-3}
# FP8 against float64 NumPy measures FP8's own rounding (E4M3's unit roundoff is 2^-4): about 5% of O's RMS and 0.03 in
# the LSE on these N(0,1) inputs (H200, 2026-12-04), while a layout or scale bug is off by order 1. Two unit roundoffs
# for both; exactness against the CPU's emulation of the same quantisation is flashattn verify's job.
FP8_RELATIVE_RMS = 2 * 2.0 ** -4
FP8_LSE_TOLERANCE = 2 * 2.0 ** -4

def to_bf16_bits(x):
    """float32 -> bfloat16 bits (round to nearest even), as uint16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)

def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)

def attention(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None):
    """float64 attention, FlashAttention's conventions: (b, s, h, d), GQA, bottom-right causal/window, softcap."""
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    b, sq, hq, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    group = hq // hk
    k = np.repeat(k, group, axis=2)
    v = np.repeat(v, group, axis=2)
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    left, right = window
    if causal:
        right = 0
    i = np.arange(sq)[:, None] + (sk - sq)
    j = np.arange(sk)[None, :]
    visible = np.ones((sq, sk), dtype=bool)
    if left >= 0:
        visible &= j >= i - left
    if right >= 0:
        visible &= j <= i + right
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m_safe)
    l = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.where(l > 0, np.log(l) + m_safe, -np.inf)[..., 0]
        p = np.where(l > 0, p / l, 0.0)
    o = np.einsum("bhqk,bkhd->bqhd", p, v)
    return o, lse  # o: (b, sq, hq, d); lse: (b, hq, sq)

CASES = [
    # name, (b, sq, sk, hq, hk, d), rank, options
    ("full", (2, 129, 129, 4, 4, 64), 4, {}),
    ("causal Sq<Sk GQA 4:1", (1, 100, 257, 8, 2, 128), 4, {"causal": True}),
    ("window+softcap rank3", (1, 200, 200, 2, 2, 80), 3, {"window": (32, 8), "softcap": 20.0}),
]
# The GPU kernels take head dims 64, 128 and 256.
CASES_CUDA = CASES[:2] + [("window+softcap rank3", (1, 200, 200, 2, 2, 256), 3, {"window": (32, 8), "softcap": 20.0})]

def run_case(flashattn, workdir, dtype, name, shape, rank, opts, rng, device="cpu", fp8=False):
    b, sq, sk, hq, hk, d = shape
    q = rng.standard_normal((b, sq, hq, d), dtype=np.float32)
    k = rng.standard_normal((b, sk, hk, d), dtype=np.float32)
    v = rng.standard_normal((b, sk, hk, d), dtype=np.float32)
    if dtype == "float32":
        files = (q, k, v); widen = lambda x: x
    elif dtype == "float16":
        files = tuple(t.astype(np.float16) for t in (q, k, v)); widen = lambda x: x.astype(np.float32)
    elif dtype == "bf16-u2":
        files = tuple(to_bf16_bits(t) for t in (q, k, v)); widen = from_bf16_bits
    else:  # raw 2-byte void, what ml_dtypes.bfloat16 arrays look like on disk
        files = tuple(to_bf16_bits(t).view("V2") for t in (q, k, v)); widen = lambda x: from_bf16_bits(x.view(np.uint16))
    paths = {}
    for label, arr in zip("qkv", files):
        arr = arr[0] if rank == 3 else arr
        paths[label] = os.path.join(workdir, f"{label}.npy")
        np.save(paths[label], arr)
    out, lse_path = os.path.join(workdir, "o.npy"), os.path.join(workdir, "lse.npy")
    for p in (out, lse_path):
        if os.path.exists(p): os.remove(p)
    cmd = flashattn + ["run", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--out", out, "--lse", lse_path, "--device", device]
    if fp8: cmd += ["--dtype", "fp8"]
    if opts.get("causal"): cmd.append("--causal")
    if "window" in opts: cmd += ["--window-left", str(opts["window"][0]), "--window-right", str(opts["window"][1])]
    if "softcap" in opts: cmd += ["--softcap", str(opts["softcap"])]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {dtype:8} {name}: flashattn exited {r.returncode}: {r.stderr.strip()}")
        return False
    o = np.load(out)
    lse = np.load(lse_path)
    # The same inputs NumPy sees: read back from our own files, widened exactly.
    qq, kk, vv = (widen(np.load(paths[x])) for x in "qkv")
    if rank == 3:
        qq, kk, vv = qq[None], kk[None], vv[None]
    ref_o, ref_lse = attention(qq, kk, vv, opts.get("causal", False), opts.get("window", (-1, -1)), opts.get("softcap", 0.0))
    if rank == 3:
        ref_o, ref_lse = ref_o[0], ref_lse[0]
    expected_dtype = files[0].dtype
    if o.dtype != expected_dtype or o.shape != ref_o.shape:
        print(f"FAIL {dtype:8} {name}: got {o.dtype} {o.shape}, expected {expected_dtype} {ref_o.shape}")
        return False
    err_o = float(np.max(np.abs(widen(o).astype(np.float64) - ref_o)))
    finite = np.isfinite(ref_lse)
    err_lse = float(np.max(np.abs(lse[finite].astype(np.float64) - ref_lse[finite]))) if finite.any() else 0.0
    if fp8:
        diff = widen(o).astype(np.float64) - ref_o
        err_o = float(np.sqrt(np.mean(diff ** 2)) / max(np.sqrt(np.mean(ref_o ** 2)), 1e-30))
        tol, lse_tol, what = FP8_RELATIVE_RMS, FP8_LSE_TOLERANCE, "rms|O-numpy|/rms|O|"
    else:
        tol, lse_tol, what = (TOLERANCE_CUDA if device == "cuda" else TOLERANCE)[dtype], LSE_TOLERANCE[device], "max|O-numpy|"
    ok = err_o <= tol and err_lse <= lse_tol and np.array_equal(np.isfinite(lse), finite)
    print(f"{'ok  ' if ok else 'FAIL'} {device:4}{' fp8' if fp8 else ''} {dtype:8} {name:22} O {o.dtype.str} {str(o.shape):18} {what} = {err_o:.3e} "
          f"(tol {tol:.1e})  max|lse-numpy| = {err_lse:.3e}")
    return ok

VARLEN_CASES = [
    # name, query lengths, key lengths (None: the queries' offsets serve both, --cu-seqlens-q alone), hq, hk, d, options
    ("varlen causal GQA 4:1", [37, 0, 129, 300, 1], None, 8, 2, 128, {"causal": True}),
    ("varlen keys apart full", [50, 17, 200], [80, 17, 150], 4, 4, 64, {}),
    ("varlen causal Sq>Sk d256", [64, 130], [40, 130], 2, 2, 256, {"causal": True}),
    ("varlen window", [100, 257], None, 2, 1, 64, {"window": (32, 8)}),
]

def run_varlen_case(flashattn, workdir, dtype, name, q_lens, k_lens, hq, hk, d, opts, rng, device):
    """run --cu-seqlens-q/-k on packed (total, heads, d) files against float64 NumPy attention per sequence."""
    cu_q = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    cu_k = cu_q if k_lens is None else np.concatenate([[0], np.cumsum(k_lens)]).astype(np.int32)
    q = rng.standard_normal((cu_q[-1], hq, d), dtype=np.float32)
    k = rng.standard_normal((cu_k[-1], hk, d), dtype=np.float32)
    v = rng.standard_normal((cu_k[-1], hk, d), dtype=np.float32)
    if dtype == "float32":
        files = (q, k, v); widen = lambda x: x
    elif dtype == "float16":
        files = tuple(t.astype(np.float16) for t in (q, k, v)); widen = lambda x: x.astype(np.float32)
    else:
        files = tuple(to_bf16_bits(t) for t in (q, k, v)); widen = from_bf16_bits
    paths = {label: os.path.join(workdir, f"{label}.npy") for label in ("q", "k", "v", "cu_q", "cu_k")}
    for label, arr in zip(("q", "k", "v", "cu_q", "cu_k"), files + (cu_q, cu_k)):
        np.save(paths[label], arr)
    out, lse_path = os.path.join(workdir, "o.npy"), os.path.join(workdir, "lse.npy")
    for p in (out, lse_path):
        if os.path.exists(p): os.remove(p)
    cmd = flashattn + ["run", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--out", out, "--lse", lse_path,
                       "--device", device, "--cu-seqlens-q", paths["cu_q"]]
    if k_lens is not None: cmd += ["--cu-seqlens-k", paths["cu_k"]]
    if opts.get("causal"): cmd.append("--causal")
    if "window" in opts: cmd += ["--window-left", str(opts["window"][0]), "--window-right", str(opts["window"][1])]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {dtype:8} {name}: flashattn exited {r.returncode}: {r.stderr.strip()}")
        return False
    o, lse = np.load(out), np.load(lse_path)
    if o.dtype != files[0].dtype or o.shape != q.shape or lse.shape != (hq, cu_q[-1]):
        print(f"FAIL {dtype:8} {name}: got O {o.dtype} {o.shape}, LSE {lse.shape}; expected {files[0].dtype} {q.shape}, {(hq, cu_q[-1])}")
        return False
    qq, kk, vv = (widen(f) for f in files)
    ref_o, ref_lse = np.zeros(q.shape), np.zeros((hq, cu_q[-1]))
    for b in range(len(q_lens)):
        sq, sk = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        if cu_q[b + 1] == cu_q[b]:
            continue
        ob, lb = attention(qq[None, sq], kk[None, sk], vv[None, sk], opts.get("causal", False), opts.get("window", (-1, -1)))
        ref_o[sq], ref_lse[:, sq] = ob[0], lb[0]
    err_o = float(np.max(np.abs(widen(o).astype(np.float64) - ref_o)))
    finite = np.isfinite(ref_lse)
    err_lse = float(np.max(np.abs(lse[finite].astype(np.float64) - ref_lse[finite]))) if finite.any() else 0.0
    tol, lse_tol = (TOLERANCE_CUDA if device == "cuda" else TOLERANCE)[dtype], LSE_TOLERANCE[device]
    ok = err_o <= tol and err_lse <= lse_tol and np.array_equal(np.isfinite(lse), finite)
    print(f"{'ok  ' if ok else 'FAIL'} {device:4} {dtype:8} {name:26} {len(q_lens)} seqs, {cu_q[-1]}x{cu_k[-1]} tokens  max|O-numpy| = {err_o:.3e} "
          f"(tol {tol:.1e})  max|lse-numpy| = {err_lse:.3e}")
    return ok

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flashattn", default=f"dotnet run --project {shlex.quote(os.path.join(REPO, 'src', 'FlashAttention.Cli'))} -c Release --",
                    help="command that runs flashattn (default: dotnet run on this repository)")
    ap.add_argument("--keep", help="folder to keep the .npy files in (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where flashattn run computes (cuda: float16 and bfloat16 only)")
    ap.add_argument("--fp8", action="store_true", help="with --device cuda: flashattn run --dtype fp8 (quantised on the GPU, the FP8 kernel)")
    ap.add_argument("--cu-seqlens", action="store_true", help="packed variable-length cases (run --cu-seqlens-q/-k), checked per sequence")
    args = ap.parse_args()
    if args.fp8 and args.cu_seqlens:
        ap.error("--cu-seqlens: the variable-length kernels compute in the files' 16-bit type; leave out --fp8")
    if args.fp8 and args.device != "cuda":
        ap.error("--fp8: the FP8 kernel runs on the GPU; add --device cuda")
    flashattn = shlex.split(args.flashattn)
    rng = np.random.default_rng(args.seed)
    workdir = args.keep or tempfile.mkdtemp(prefix="flashattn-npy-")
    os.makedirs(workdir, exist_ok=True)
    print(f"numpy {np.__version__}; files in {workdir}")
    ok = True
    dtypes = ("float16", "bf16-u2", "bf16-V2") if args.device == "cuda" else ("float32", "float16", "bf16-u2", "bf16-V2")
    if args.cu_seqlens:
        for dtype in (d for d in dtypes if d != "bf16-V2"):
            for case in VARLEN_CASES:
                ok &= run_varlen_case(flashattn, workdir, dtype, *case, rng, args.device)
        print("all cases match NumPy" if ok else "MISMATCH")
        return 0 if ok else 1
    for dtype in dtypes:
        for name, shape, rank, opts in (CASES_CUDA if args.device == "cuda" else CASES):
            if args.fp8 and "softcap" in opts:  # the FP8 kernel has no softcap (refused by name): the window alone
                name, opts = name.replace("+softcap", ""), {k: v for k, v in opts.items() if k != "softcap"}
            ok &= run_case(flashattn, workdir, dtype, name, shape, rank, opts, rng, args.device, args.fp8)
    print("all cases match NumPy" if ok else "MISMATCH")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
