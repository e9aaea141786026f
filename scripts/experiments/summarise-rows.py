#!/usr/bin/env python3
"""Summarises flashattn bench JSON files (e.g. a variants.sh or decode-study.sh run) into one table: a row per case, a
column per file (named by the file's stem), the median time in µs and, for KV-cache rows, the K/V bytes read per second.
Usage: python3 scripts/experiments/summarise-rows.py DIR_OR_FILES..."""
import glob, json, os, sys

files = []
for a in sys.argv[1:]:
    files += sorted(glob.glob(os.path.join(a, "*.json"))) if os.path.isdir(a) else [a]
cols, table = [], {}
for f in files:
    col = os.path.splitext(os.path.basename(f))[0]
    cols.append(col)
    for r in json.load(open(f))["rows"]:
        key = (r["batch"], r.get("seqlen_q"), r.get("seqlen_k"), r.get("page_size", ""), r.get("append_length", ""), r.get("mask"))
        cell = f"{r['time_ms_median'] * 1000:.1f}"
        if r.get("kv_tbps"):
            cell += f" ({r['kv_tbps']:.2f})"
        if r.get("host_ms_median") is not None:
            cell += f" h{r['host_ms_median'] * 1000:.1f}"
        table.setdefault(key, {})[col] = cell
print("| batch, sq, sk, page, append, mask | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
for key in sorted(table, key=lambda k: tuple(str(x) for x in k)):
    print(f"| {', '.join(str(x) for x in key)} | " + " | ".join(table[key].get(c, "") for c in cols) + " |")
