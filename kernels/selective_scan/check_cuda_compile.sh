#!/usr/bin/env bash
# Compile-checks the CUDA kernels (csrc/*.cu) with nvcc on a machine without a GPU: no linking, no GPU
# needed, only nvcc and an installed torch (a CPU-only wheel is enough: it ships the c10/cuda headers the
# kernels use). Exits non-zero on a compile error; prints SKIP and exits 0 only when nvcc is not installed.
#
# Flags mirror the real build (setup.py's nvcc flags plus the ones torch's CUDAExtension adds), for one or
# two architectures to stay fast:
#   DASS_CUDA_ARCHS   space-separated compute capabilities to compile for (default "90"; e.g. "80 90")
#   PYTHON            the interpreter whose torch to compile against (default: python, else python3)
#   NVCC              the nvcc to use (default: nvcc on PATH, else $CUDA_HOME/bin/nvcc, else /usr/local/cuda)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CSRC="$HERE/csrc"

find_nvcc() {
  if [[ -n "${NVCC:-}" ]]; then
    command -v "$NVCC" || true
    return
  fi
  if command -v nvcc >/dev/null 2>&1; then
    command -v nvcc
    return
  fi
  for home in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [[ -n "$home" && -x "$home/bin/nvcc" ]]; then
      echo "$home/bin/nvcc"
      return
    fi
  done
}

NVCC_BIN="$(find_nvcc)"
if [[ -z "$NVCC_BIN" ]]; then
  echo "SKIP: nvcc not found (PATH, \$NVCC, \$CUDA_HOME, /usr/local/cuda); the CUDA kernels were not compile-checked."
  exit 0
fi

PYTHON_BIN="${PYTHON:-}"
if [[ -z "$PYTHON_BIN" ]]; then
  PYTHON_BIN="$(command -v python || command -v python3 || true)"
fi
if [[ -z "$PYTHON_BIN" ]]; then
  echo "ERROR: no python interpreter found to locate torch's headers (set PYTHON)." >&2
  exit 2
fi
# One interpreter start (importing torch is slow): line 1 the -I flags, line 2 the C++ ABI, line 3 the version.
if ! TORCH_INFO="$("$PYTHON_BIN" -c '
import torch
import torch.utils.cpp_extension as ext
print(" ".join("-I" + path for path in ext.include_paths()))
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.__version__)
')"; then
  echo "ERROR: $PYTHON_BIN cannot import torch, which the CUDA kernels compile against." >&2
  exit 2
fi
TORCH_INCLUDES="$(sed -n 1p <<<"$TORCH_INFO")"
CXX11_ABI="$(sed -n 2p <<<"$TORCH_INFO")"
TORCH_VERSION="$(sed -n 3p <<<"$TORCH_INFO")"

shopt -s nullglob
SOURCES=("$CSRC"/*.cu)
if [[ ${#SOURCES[@]} -eq 0 ]]; then
  echo "ERROR: no CUDA sources in $CSRC" >&2
  exit 2
fi

GENCODE=()
for arch in ${DASS_CUDA_ARCHS:-90}; do
  GENCODE+=("-gencode" "arch=compute_${arch},code=sm_${arch}")
done

OUT_DIR="$(mktemp -d)"
trap 'rm -rf "$OUT_DIR"' EXIT

# torch's CUDAExtension adds the __CUDA_NO_* defines and --expt-relaxed-constexpr; setup.py adds -O3
# -lineinfo (torch supplies -std=c++20 for the real build; this check compiles them as C++17,
# which they must also satisfy). The two diagnostics silenced are torch headers' C++20 bit-field initialisers.
FLAGS=(
  -c -O3 -std=c++17 -lineinfo
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
  -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr
  -DDASS_WITH_CUDA=1 -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C "-D_GLIBCXX_USE_CXX11_ABI=$CXX11_ABI"
  --compiler-options -fPIC -Xcompiler -Wno-c++20-extensions -diag-suppress 3306
  --threads 2
  "${GENCODE[@]}"
  -I"$CSRC"
)
# shellcheck disable=SC2206  # word-splitting the -I list is intended
FLAGS+=($TORCH_INCLUDES)

echo "nvcc: $NVCC_BIN ($("$NVCC_BIN" --version | tail -n 1))"
echo "torch: $TORCH_VERSION, archs: ${DASS_CUDA_ARCHS:-90}"
status=0
for source in "${SOURCES[@]}"; do
  name="$(basename "$source" .cu)"
  start=$SECONDS
  if "$NVCC_BIN" "${FLAGS[@]}" "$source" -o "$OUT_DIR/$name.o"; then
    echo "OK: $name.cu compiled in $((SECONDS - start)) s"
  else
    echo "FAIL: $name.cu does not compile (nvcc exit status above)" >&2
    status=1
  fi
done
exit $status
