"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this folder is on the path)."""

from __future__ import annotations

from pathlib import Path


def cpu_description() -> str:
    """The CPU model and the x86 extensions that decide int8 and bf16 speed (figures differ a lot between
    machines: an AVX2-only CPU runs this project's int8 models about 3x slower than one with AVX-512 VNNI)."""
    import platform

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return f"{name}; {' '.join(f for f in wanted if f in flags) or 'no x86 SIMD flags read'}"
