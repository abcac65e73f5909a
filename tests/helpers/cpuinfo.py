"""/proc/cpuinfo texts of the two kinds of CPU the precision choice tells apart, for tests that give a CPU."""

from __future__ import annotations

from pathlib import Path

#: AVX-512 without bf16 instructions: bf16 would be emulated, so auto serves fp32.
ICE_LAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_vnni
"""
#: AVX512-BF16 and AMX: native bf16, so auto serves bf16.
SAPPHIRE_RAPIDS = ICE_LAKE.replace("avx512_vnni", "avx512_vnni avx512_bf16 amx_bf16 amx_tile")


def cpuinfo_file(directory: Path, text: str, name: str = "cpuinfo") -> Path:
    path = directory / name
    path.write_text(text)
    return path
