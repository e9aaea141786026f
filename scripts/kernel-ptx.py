#!/usr/bin/env python3
"""PTX of kernel instantiations, through NVRTC, for comparing kernels across a refactor.

Each line of the list file is `<source .cu, relative to the kernels folder> <name expression>`; the PTX of each
goes to <out>/<index>.ptx with the kernel's mangled name replaced by `KERNEL` and `.loc`/`.file` lines dropped, so two
trees whose kernels compile to the same instructions give identical files even where template signatures differ.
Options match the library's (CompileOptions: C++20, device as default execution space) for compute_90a.

Usage: FLASHATTN_NVRTC=<libnvrtc.so> python3 scripts/kernel-ptx.py <kernels folder> <list file> <out folder>
(`eval "$(bash scripts/local-toolkit.sh)"` sets FLASHATTN_NVRTC.)
"""
import ctypes
import os
import re
import sys


def main() -> int:
    kernels, listing, out = sys.argv[1:4]
    nvrtc = ctypes.CDLL(os.environ.get("FLASHATTN_NVRTC", "libnvrtc.so.12"))
    os.makedirs(out, exist_ok=True)
    for index, line in enumerate(l for l in open(listing) if l.strip()):
        source, name = line.strip().split(" ", 1)
        text = open(os.path.join(kernels, source), encoding="utf-8").read()
        prog = ctypes.c_void_p()
        check(nvrtc, nvrtc.nvrtcCreateProgram(ctypes.byref(prog), text.encode(), source.encode(), 0, None, None))
        check(nvrtc, nvrtc.nvrtcAddNameExpression(prog, name.encode()))
        options = [b"--gpu-architecture=compute_90a", b"--std=c++20", b"--device-as-default-execution-space",
                   b"-I" + kernels.encode(), b"-I" + os.path.join(kernels, os.path.dirname(source)).encode()]
        array = (ctypes.c_char_p * len(options))(*options)
        status = nvrtc.nvrtcCompileProgram(prog, len(options), array)
        if status != 0:
            size = ctypes.c_size_t()
            nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetProgramLog(prog, log)
            print(f"{source} {name}: compile failed\n{log.value.decode()}", file=sys.stderr)
            return 1
        lowered = ctypes.c_char_p()
        check(nvrtc, nvrtc.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(lowered)))
        size = ctypes.c_size_t()
        check(nvrtc, nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size)))
        ptx = ctypes.create_string_buffer(size.value)
        check(nvrtc, nvrtc.nvrtcGetPTX(prog, ptx))
        text = ptx.value.decode().replace(lowered.value.decode(), "KERNEL")
        text = "\n".join(l for l in text.splitlines() if not re.match(r"\s*\.(loc|file)\b", l) and not l.startswith("//"))
        with open(os.path.join(out, f"{index:02d}.ptx"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"{index:02d} {source} {name}")
    return 0


def check(nvrtc, status: int) -> None:
    if status != 0:
        nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise RuntimeError(nvrtc.nvrtcGetErrorString(status).decode())


if __name__ == "__main__":
    sys.exit(main())
