"""Benchmarks of this repository: the CPU benchmark command and the helpers every benchmark script shares.

    python -m scripts.bench --help          # from the repository root: the CPU benchmark (scripts/bench/cpu.py)

machine.py   the machine a run is on (CPU model, ISA flags, memory) and the process's CPU clock
timing.py    the one timing loop: warm-up, then timed calls (several cases interleaved in rounds, or one)
models.py    a randomly initialised DASS-small saved as a folder (for benchmarks that load a model by path)
cpu.py       the CPU benchmark: AST, PANNs CNN14 and DASS in each precision and on ONNX Runtime, side by side

scripts/benchmark.py and scripts/benchmark_tagging.py import machine.py, timing.py and models.py as `bench.machine`,
`bench.timing` and `bench.models` (running a script puts its own folder, scripts/, first on sys.path).
"""
