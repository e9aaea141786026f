#!/usr/bin/env bash
# Publishes the flashattn CLI as a Native-AOT linux-x64 binary into artifacts/device (git-ignored), the form the GPU
# machine runs: it has no .NET. The device tool carries the folder: carry ["artifacts/device"].
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet publish src/FlashAttention.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/device "$@"
# The decode example beside it (device-check.sh example-decode): one carry holds both.
dotnet publish examples/GpuDecode -c Release -r linux-x64 -p:PublishAot=true -o artifacts/device/examples "$@"
# The commit the binary was built from (plus -dirty): the device machine's copy of the tree may carry a stale .git,
# so device-check.sh stamps results with this file rather than asking git there.
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo -dirty)" > artifacts/device/COMMIT
rm -f artifacts/device/*.dbg artifacts/device/*.pdb artifacts/device/*.xml artifacts/device/examples/*.dbg artifacts/device/examples/*.pdb artifacts/device/examples/*.xml  # not needed to run; less to carry
ls -la artifacts/device
