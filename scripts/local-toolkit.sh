#!/usr/bin/env bash
# Brings NVRTC and the CUDA binary tools (ptxas, cuobjdump, nvdisasm) onto a Debian machine without a GPU, into a
# folder of their own (nothing is installed system-wide, the system's apt configuration is left as it is), so that
# `flashattn warmup` compiles every kernel variant here as NVRTC does on the GPU machine: ptxas's registers, spills
# and C75xx warnings (serialised wgmma, ignored setmaxnreg), and the SASS (HGMMA, LDL/STL) through cuobjdump.
#
# Source: the packages libnvrtc12, libnvrtc-builtins12.x and nvidia-cuda-toolkit of Debian's non-free component,
# from the Debian archive this machine's apt already uses: the suite "experimental" (CUDA 12.5), else trixie (12.4);
# FLASHATTN_TOOLKIT_SUITE picks one. The GPU machine has NVRTC 13.0: registers and spills agree for every default
# variant (checked 2026-12-01), a few other variants differ by a few bytes of spill, and ptxas 12.5 reports the
# serialised wgmma (C7518) that 13.0 reported for the cross-tile variant where 12.4 did not. The GPU run stays the
# authority.
#
# Usage:  eval "$(bash scripts/local-toolkit.sh)"      (prints the exports; progress goes to stderr)
#         FLASHATTN_TOOLKIT_DIR=<dir> to choose the folder (default ~/.cache/flashattn-toolkit)
set -euo pipefail
dir="${FLASHATTN_TOOLKIT_DIR:-$HOME/.cache/flashattn-toolkit}"
root="$dir/root"
lib="$root/usr/lib/x86_64-linux-gnu"
if [ ! -e "$lib/libnvrtc.so.12" ] || [ ! -x "$root/usr/bin/cuobjdump" ]; then
  command -v apt-get >/dev/null || { echo "local-toolkit: needs apt-get (a Debian machine)" >&2; exit 1; }
  # The archive this machine's apt uses (deb822 .sources or a one-line list), and its keyring.
  uri=$(grep -hm1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
  [ -n "$uri" ] || uri=$(grep -hm1 '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
  [ -n "$uri" ] || { echo "local-toolkit: found no Debian archive in /etc/apt" >&2; exit 1; }
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$dir/apt/lists/partial" "$dir/debs" "$root"
  apt_opts=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache::archives=$dir/debs" -o APT::Sandbox::User=root)
  builtins=""
  for suite in ${FLASHATTN_TOOLKIT_SUITE:-experimental trixie}; do
    echo "deb [signed-by=$keyring] $uri $suite non-free" > "$dir/apt/sources.list"
    echo "local-toolkit: reading the $suite non-free package list from $uri" >&2
    apt-get "${apt_opts[@]}" -qq update >&2 || continue
    # the builtins library is versioned in its package name (libnvrtc-builtins12.5); the newest of the suite
    builtins=$(apt-cache "${apt_opts[@]}" pkgnames libnvrtc-builtins12 2>/dev/null | sort -V | tail -1)
    [ -n "$builtins" ] && break
  done
  [ -n "$builtins" ] || { echo "local-toolkit: no libnvrtc-builtins package in ${FLASHATTN_TOOLKIT_SUITE:-experimental trixie}" >&2; exit 1; }
  echo "local-toolkit: downloading libnvrtc12, $builtins, nvidia-cuda-toolkit (~105 MB)" >&2
  (cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download libnvrtc12 "$builtins" nvidia-cuda-toolkit >&2)
  for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  [ -e "$lib/libnvrtc.so.12" ] || { echo "local-toolkit: libnvrtc.so.12 missing after unpacking" >&2; exit 1; }
fi
echo "local-toolkit: $("$root/usr/bin/ptxas" --version | tail -1)" >&2
cat <<EOF
export FLASHATTN_NVRTC="$lib/libnvrtc.so.12"
export LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$root/usr/bin:\$PATH"
EOF
