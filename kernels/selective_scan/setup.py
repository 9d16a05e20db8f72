"""Builds dass_selective_scan._C, the compiled dass:: ops.

CPU only by default. CUDA kernels (csrc/*.cu) are compiled in when CUDA is usable (torch sees a GPU, or
DASS_BUILD_CUDA=1) and CUDA_HOME is found; DASS_BUILD_CUDA=0 forces a CPU-only build.

    pip install --no-build-isolation ./kernels/selective_scan
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError as error:  # pragma: no cover - build-time message
    raise RuntimeError(
        "building dass_selective_scan needs torch installed first: "
        "pip install --no-build-isolation ./kernels/selective_scan"
    ) from error

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
# -fno-trapping-math: the kernels never read FP exception flags, and without it gcc will not turn the
# selects of csrc/vec_math.h into blends, leaving the hot loops scalar. No -march: see DASS_TARGET_CLONES.
CXX_FLAGS = ["-O3", "-fopenmp", "-fno-trapping-math"]  # the C++ standard is torch's choice
NVCC_FLAGS = ["-O3", "-lineinfo"]


def cuda_requested() -> bool:
    """DASS_BUILD_CUDA=0/1 decides; otherwise build CUDA kernels when torch sees a GPU."""
    flag = os.environ.get("DASS_BUILD_CUDA", "").strip()
    if flag == "0":
        return False
    if flag == "1":
        if cpp_extension.CUDA_HOME is None:
            raise RuntimeError("DASS_BUILD_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
        return True
    return torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None


def relative(paths) -> list[str]:
    return sorted(str(path.relative_to(HERE)) for path in paths)


def extension():
    cpp_sources = relative(CSRC.glob("*.cpp"))
    cuda_sources = relative(CSRC.glob("*.cu"))
    common = dict(name="dass_selective_scan._C", include_dirs=[str(CSRC)], extra_link_args=["-fopenmp"])
    if cuda_sources and cuda_requested():
        return cpp_extension.CUDAExtension(
            sources=cpp_sources + cuda_sources,
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
            define_macros=[("DASS_WITH_CUDA", "1")],
            **common,
        )
    return cpp_extension.CppExtension(sources=cpp_sources, extra_compile_args={"cxx": CXX_FLAGS}, **common)


setup(
    name="dass-selective-scan",
    version="0.1.0",
    description="Compiled CPU/CUDA kernels of the DASS cross selective scan (torch.ops.dass)",
    packages=["dass_selective_scan"],
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    python_requires=">=3.10",
    zip_safe=False,
)
