"""What this machine's CPU is, read from the OS: the facts behind the ``host`` target.

:func:`edgekit.targets.target_file.load_target_file` fills a profile with ``detect = true`` (the bundled
``host.toml``) from :func:`detect_host`; this module knows nothing about profiles.

Peak fp32 is *derived*, not measured: logical cores x clock x FP32 FLOP/cycle/core, with 64 FLOP/cycle
for AVX-512 (2 x 16 lanes x FMA), 32 for AVX2 + FMA (2 x 8 lanes x FMA) and 16 otherwise (SSE or
NEON: 2 x 4 lanes x FMA). Int8 is 4x fp32 with VNNI (one ``vpdpbusd`` does 4 int8 multiply-adds per
32-bit lane where an FMA does one); without VNNI int8 runs at about the fp32 rate. Memory bandwidth is
not knowable without measuring, so it stays ``None``. Off Linux, whatever ``/proc`` would give is
left unknown (clock, flags, memory), and without a clock there is no peak.

Example:
    >>> info = detect_host()
    >>> info.logical_cores >= 1
    True
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HostInfo", "detect_host"]

# The /proc/cpuinfo flags that change the peak estimate (x86 names, then the Arm ones).
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma", "asimd", "asimddp")


@dataclass(frozen=True)
class HostInfo:
    """What this machine's CPU and memory look like, as far as the OS says without measuring."""

    cpu_model: str
    logical_cores: int
    clock_ghz: float | None
    flags: frozenset[str]
    memory_gb: float | None

    @property
    def flops_per_cycle(self) -> int:
        """FP32 FLOP per cycle per core from the vector extensions present (see the module docstring).

        Example:
            >>> HostInfo("x", 1, 3.0, frozenset({"avx512f", "avx2", "fma"}), None).flops_per_cycle
            64
        """
        if "avx512f" in self.flags:
            return 64
        if "avx2" in self.flags and "fma" in self.flags:
            return 32
        return 16

    @property
    def vnni(self) -> bool:
        """Whether int8 dot-product instructions (AVX512-VNNI or AVX-VNNI) are present.

        Example:
            >>> HostInfo("x", 1, 3.0, frozenset({"avx2", "fma", "avx_vnni"}), None).vnni
            True
        """
        return bool({"avx512_vnni", "avx_vnni"} & self.flags)

    @property
    def peak(self) -> dict[str, float]:
        """Derived dense peak TFLOPS/TOPS per precision; empty when the clock is unknown.

        Example:
            >>> HostInfo("x", 4, 2.0, frozenset({"avx2", "fma"}), None).peak
            {'fp32': 0.256, 'int8': 0.256}
        """
        if self.clock_ghz is None:
            return {}
        fp32 = round(self.logical_cores * self.clock_ghz * self.flops_per_cycle / 1000, 4)
        return {"fp32": fp32, "int8": round(fp32 * 4, 4) if self.vnni else fp32}

    @property
    def notes(self) -> str:
        """One line saying how the peak was derived.

        Example:
            >>> HostInfo("x", 2, 2.0, frozenset({"asimd"}), None).notes  # doctest: +ELLIPSIS
            'derived peak: 2 logical cores x 2 GHz x 16 FP32 FLOP/cycle (SSE/NEON); ...; no VNNI: int8 not faster'
        """
        if self.clock_ghz is None:
            return "clock unknown: peak not derived"
        vector = {64: "AVX-512", 32: "AVX2+FMA", 16: "SSE/NEON"}[self.flops_per_cycle]
        text = (
            f"derived peak: {self.logical_cores} logical cores x {self.clock_ghz:g} GHz x "
            f"{self.flops_per_cycle} FP32 FLOP/cycle ({vector}); SMT siblings share FMA units"
        )
        return text + ("; int8 = 4 x fp32 (VNNI)" if self.vnni else "; no VNNI: int8 not faster")


def _cpuinfo() -> dict[str, list[str]]:
    """Every ``key: value`` line of /proc/cpuinfo, by key; empty off Linux."""
    fields: dict[str, list[str]] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    return fields


def _clock_ghz(cpuinfo: dict[str, list[str]], model: str) -> float | None:
    """Max clock: cpufreq's cpuinfo_max_freq, else the highest ``cpu MHz``, else ``@ x.xxGHz`` in the model."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        pass
    mhz = [float(v) for v in cpuinfo.get("cpu MHz", []) if re.fullmatch(r"[0-9.]+", v)]
    if mhz and max(mhz) > 0:
        return round(max(mhz) / 1000, 3)
    match = re.search(r"@\s*([0-9.]+)\s*GHz", model)
    return float(match.group(1)) if match else None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def detect_host() -> HostInfo:
    """Detect this machine's CPU model, usable logical cores, clock, vector flags and memory.

    Example:
        >>> detect_host().flops_per_cycle in (16, 32, 64)
        True
    """
    cpuinfo = _cpuinfo()
    model = next(
        (cpuinfo[key][0] for key in ("model name", "Hardware", "Processor") if cpuinfo.get(key)),
        platform.processor() or platform.machine() or "unknown CPU",
    )
    flags = set()
    for key in ("flags", "Features"):  # x86, Arm
        for line in cpuinfo.get(key, [])[:1]:
            flags.update(line.split())
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return HostInfo(
        cpu_model=model,
        logical_cores=max(cores, 1),
        clock_ghz=_clock_ghz(cpuinfo, model),
        flags=frozenset(flags & set(_FLAGS)),
        memory_gb=_memory_gb(),
    )
