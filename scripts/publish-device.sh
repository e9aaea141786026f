#!/usr/bin/env bash
# Publishes the flashattn CLI as a Native-AOT linux-x64 binary into artifacts/device (git-ignored), the form the GPU
# machine runs: it has no .NET. The device tool carries the folder: carry ["artifacts/device"].
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet publish src/FlashAttention.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/device "$@"
# The decode example beside it (device-check.sh example-decode): one carry holds both.
dotnet publish examples/GpuDecode -c Release -r linux-x64 -p:PublishAot=true -o artifacts/device/examples "$@"
# The commit stamped into the binary at build time (plus -dirty), read back from it: device-check.sh exports this file
# as FLASHATTN_COMMIT so that the peers' rows carry the same commit as ours.
artifacts/device/flashattn --version | sed 's/^[^+]*+//' > artifacts/device/COMMIT
rm -f artifacts/device/*.dbg artifacts/device/*.pdb artifacts/device/*.xml artifacts/device/examples/*.dbg artifacts/device/examples/*.pdb artifacts/device/examples/*.xml  # not needed to run; less to carry
ls -la artifacts/device
