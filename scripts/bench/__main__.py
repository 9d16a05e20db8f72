"""`python -m scripts.bench`: the CPU benchmark (see scripts/bench/cpu.py, or `--help`)."""

from .cpu import main

main()
