// Schemas of the dass:: ops. Backends register their kernels with TORCH_LIBRARY_IMPL(dass, <Key>, m) in
// their own files (cross_scan_cpu.cpp, and cross_scan_cuda.cu when built with CUDA).
//
// Shapes: u (Bt, L, Dc) with L = height * width in row-major grid order, delta (Bt, 4, L, Dc),
// A (4, Dc, N), B and C (Bt, 4, L, N), D and delta_bias (4, Dc); all contiguous. dtypes: see the backends'
// files (u, delta float32 / float16 / bfloat16; A, D, delta_bias float32). The CPU kernels' instruction-set
// variant is reported and forced by the ops of cpu_isa.cpp.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(dass, m) {
  m.def(
      "cross_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor D, Tensor delta_bias, "
      "int height, int width) -> Tensor");
  m.def(
      "cross_scan_bwd(Tensor dy, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor D, "
      "Tensor delta_bias, int height, int width) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// `import dass_selective_scan._C` only has to load this library: its static initialisers register the ops.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {
      PyModuleDef_HEAD_INIT, "_C", "Registers the torch.ops.dass operators.", -1, nullptr, nullptr, nullptr, nullptr,
      nullptr};
  return PyModule_Create(&module);
}
