"""The machine a benchmark runs on, and the process's CPU clock: what every benchmark script prints and measures."""

from __future__ import annotations

import os
import platform
import resource

ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def proc_value(path: str, key: str) -> str | None:
    """The text after the first ':' of the first line of `path` (a /proc file) that starts with `key`, or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return proc_value("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set((proc_value("/proc/cpuinfo", "flags") or "").split())


def available_memory_bytes() -> int | None:
    value = proc_value("/proc/meminfo", "MemAvailable:")
    return int(value.split()[0]) * 1024 if value else None


def cpu_seconds() -> float:
    """Process CPU time (user + system, all threads): less disturbed than wall time when other jobs share the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_lines(threads: list[int]) -> list[str]:
    """CPU model and logical CPUs, its ISA flags of interest, torch / ONNX Runtime / Python versions, threads."""
    import torch

    flags = cpu_flags()
    isa = " ".join(flag for flag in ISA_FLAGS if flag in flags) or "(no /proc/cpuinfo flags)"
    try:
        import onnxruntime

        ort = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = "onnxruntime not installed"
    return [
        f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)",
        f"ISA flags: {isa}",
        f"torch {torch.__version__} (ATen CPU capability {torch.backends.cpu.get_cpu_capability()}), {ort}, "
        f"python {platform.python_version()}",
        f"threads: {', '.join(map(str, threads))}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
    ]
