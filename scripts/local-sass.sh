#!/usr/bin/env bash
# Compiles kernel variants here, without a GPU, through the local NVRTC (12.5) of scripts/local-toolkit.sh, and summarises
# each cubin's SASS: registers, spill bytes (ptxas), HGMMA count, and every local-memory load/store (LDL/STL) by
# the role whose code holds it: the prologue (before setmaxnreg), the consumers (after USETMAXREG.TRY_ALLOC, 240 or
# 160 registers) or the producer warpgroup (after USETMAXREG.DEALLOC, 24 registers). A spill in the consumers'
# loop costs every step; one in the producer's per-block code or the prologue hardly counts.
# Tuning overrides pass through (FLASHATTN_FWD_CONFIG, FLASHATTN_BWD_CONFIG), so a variant can be screened before a
# device session is spent on it.
#
# Usage:  bash scripts/local-sass.sh [warmup options]
#   e.g.  FLASHATTN_FWD_CONFIG="128:n160,s2,q2,alias,noov" bash scripts/local-sass.sh --filter "fwd bf16 d128"
#         FLASHATTN_BWD_CONFIG="128:persist" bash scripts/local-sass.sh --filter "bwd bf16 d128"
# SASS_KEEP=<dir> keeps the cubins, their ptxas logs and the SASS listings.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
eval "$(bash "$here/scripts/local-toolkit.sh")"
work="$(mktemp -d)"
trap 'if [ -n "${SASS_KEEP:-}" ]; then mkdir -p "$SASS_KEEP"; cp "$work"/dump/* "$SASS_KEEP"/ 2>/dev/null || true; fi; rm -rf "$work"' EXIT
dotnet build "$here/src/FlashAttention.Cli" -c Release -v q -nologo >&2
cli="$here/src/FlashAttention.Cli/bin/Release/net10.0/flashattn"
# A private cache: every variant is compiled now, so each one's cubin and log land in the dump folder.
FLASHATTN_CACHE_DIR="$work/cache" FLASHATTN_DUMP_DIR="$work/dump" "$cli" warmup --jobs "$(nproc)" "$@"
echo
printf '%-10s %5s %6s %6s  %-s\n' cubin GMMA LDL STL "local memory by role (prologue / consumer / producer: loads+stores)  kernel"
for cubin in "$work"/dump/*.cubin; do
  base="${cubin%.cubin}"
  cuobjdump --dump-sass "$cubin" > "$base.sass"
  awk -v id="$(basename "$base")" '
    /Function :/ { if (fn != "") report(); fn = $3; role = "prologue"; h = 0; l = 0; s = 0; delete n }
    /USETMAXREG.TRY_ALLOC/ { role = "consumer" }
    /USETMAXREG.DEALLOC/ { role = "producer" }
    /HGMMA|QGMMA/ { h++ }
    /[^A-Z]LDL/ { l++; n[role]++ }
    /[^A-Z]STL/ { s++; n[role]++ }
    function report() {
      split(id, parts, "-")
      printf "%-10s %5d %6d %6d  %d / %d / %d  %s\n", substr(parts[2], 1, 10), h, l, s, n["prologue"], n["consumer"], n["producer"], substr(fn, 1, 120)
    }
    END { if (fn != "") report() }' "$base.sass"
done
