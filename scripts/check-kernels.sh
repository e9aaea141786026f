#!/usr/bin/env bash
# Syntax- and template-checks the kernel sources on a machine without CUDA: clang compiles them for sm_90a to
# PTX with a small prelude standing in for what NVRTC provides implicitly. It proves the C++ (templates,
# types, inline-asm operand lists); ptxas (on the GPU machine, through NVRTC) still checks the PTX itself.
# Needs clang 17+ for sm_90a (apt-get update && apt-get install -y clang-19); with clang 14–16 it checks the same sources for sm_80. Usage: scripts/check-kernels.sh
# KEEP_PTX=<dir> keeps the PTX clang produced (e.g. to show that a refactor leaves it unchanged).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kernels="$here/src/FlashAttention/Cuda/Kernels"
clang="${CLANG:-$(command -v clang++-19 || command -v clang++-22 || command -v clang++ || command -v clang++-14)}"
# clang before 17 knows no sm_90a: check the same sources for sm_80 (the inline PTX is not parsed by clang either way).
arch=sm_90a ptx=+ptx80
if [ "$("$clang" -dumpversion | cut -d. -f1)" -lt 17 ]; then arch=sm_80 ptx=+ptx75; fi
work="$(mktemp -d)"
trap '[ -n "${KEEP_PTX:-}" ] && cp "$work"/*.ptx "$KEEP_PTX"/; rm -rf "$work"' EXIT
cat > "$work/prelude.h" <<'PRE'
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#define __grid_constant__
#include <__clang_cuda_builtin_vars.h>
PRE
status=0
for src in "$kernels"/*.cu; do
  name="$(basename "$src" .cu)"
  inst="$kernels/../../../../scripts/kernel-instantiations/$name.inst"
  cp "$src" "$work/$name.cu"
  if [ -f "$inst" ]; then cat "$inst" >> "$work/$name.cu"; fi
  if "$clang" -x cuda --cuda-gpu-arch=$arch --cuda-device-only -nocudainc -nocudalib \
      -Xclang -target-feature -Xclang $ptx -std=c++17 -O1 -I "$kernels" -include "$work/prelude.h" \
      -Wno-unknown-cuda-version -S "$work/$name.cu" -o "$work/$name.ptx" 2> "$work/$name.log"; then
    echo "ok    $name.cu ($(grep -c 'wgmma.mma_async' "$work/$name.ptx" || true) wgmma in PTX)"
  else
    echo "FAIL  $name.cu"; cat "$work/$name.log"; status=1
  fi
done
exit $status
