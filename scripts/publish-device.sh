#!/usr/bin/env bash
# Publishes the flashattn CLI as a Native-AOT linux-x64 binary into artifacts/device (git-ignored), the form the GPU
# machine runs: it has no .NET. The device tool carries the folder: carry ["artifacts/device"].
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet publish src/FlashAttention.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/device "$@"
rm -f artifacts/device/*.dbg artifacts/device/*.pdb artifacts/device/*.xml  # not needed to run; less to carry
ls -la artifacts/device
