#!/usr/bin/env python3
"""Writes h100-sample.json: MADE-UP bench rows in the shape of the FlashAttention-3 paper's grid, for tests and for
looking at `flashattn report` output. The numbers only resemble published H100 figures; they are not measurements.
Standard library only. Run: python3 bench/samples/make_h100_sample.py"""
import json, os

# (implementation) -> (fwd top TFLOP/s at hdim 64/128/256, bwd top, causal half-point seqlen)
IMPLS = {
    "flashattn": ((500, 650, 750), (400, 515, 560), 1400),
    "cudnn":     ((470, 600, 640), (330, 450, 480), 1600),
    "fa2":       ((320, 335, 330), (250, 290, 300), 1800),
}
SEQLENS = [512, 1024, 2048, 4096, 8192, 16384]
rows = []
for impl, (fwd_top, bwd_top, half) in IMPLS.items():
    for direction, tops in (("fwd", fwd_top), ("bwd", bwd_top)):
        for causal in (False, True):
            for d, top in zip((64, 128, 256), tops):
                for s in SEQLENS:
                    k = (half if causal else 300) * (1.15 if direction == "bwd" else 1.0)
                    tflops = round(top * s / (s + k), 1)
                    batch, heads = 16384 // s, 2048 // d
                    flops = 4.0 * batch * heads * s * s * d / (2 if causal else 1) * (2.5 if direction == "bwd" else 1)
                    median = flops / (tflops * 1e12) * 1e3
                    row = {
                        "implementation": impl, "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3",
                        "sm_count": 132, "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
                        "driver_version": "560.35.03", "nvrtc_version": "12.6",
                        "commit": "sample", "date": "2026-11-20T12:00:00Z", "dtype": "bf16",
                        "batch": batch, "seqlen_q": s, "seqlen_k": s, "heads_q": heads, "heads_k": heads, "head_dim": d,
                        "mask": "causal" if causal else "full", "direction": direction, "warmup": 10, "repeats": 30,
                        "time_ms_median": round(median, 4), "time_ms_min": round(median * 0.98, 4), "time_ms_max": round(median * 1.05, 4),
                        "flops": flops, "tflops": tflops,
                    }
                    if impl == "flashattn":
                        row["gemm_tflops"] = 765
                    else:
                        row["notes"] = "torch 2.9 (sample)"
                    rows.append(row)
out = {
    "schema_version": 1,
    "sample": True,
    "note": "SAMPLE DATA for tests and previews: made up by bench/samples/make_h100_sample.py, NOT a measurement.",
    "rows": rows,
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "h100-sample.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print(len(rows), "rows")
