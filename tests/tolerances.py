"""Float32 rounding bounds that the numerical tests take their tolerances from.

A float32 computation that rounds n times along the way is off by at most gamma_n = n u / (1 - n u) times the
magnitude of what it combines, u = 2**-24 (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
sec. 3.1). Which operations round, and in which order, differs between CPUs (AVX2 and AVX-512 kernels, MKL
code paths, thread counts), so a test compares against a float64 ground truth where it can and allows the
bound of the computation, not the error one machine happened to print.
"""

from __future__ import annotations

import torch

from transformers_dass.ops import NUM_DIRECTIONS  # noqa: F401 - the tests take it from here

U = 2.0**-24  # float32 unit roundoff


def gamma(n: int) -> float:
    """Higham's gamma_n: relative error bound of n accumulated float32 roundings."""
    return n * U / (1 - n * U)


def scan_tolerance(length: int, state: int) -> float:
    """Error bound of a float32 selective scan's outputs and gradients, relative to their largest magnitude.

    One term of a scan output or gradient is a product through softplus, exp and up to eight multiplies (at
    most 16 roundings); the terms are accumulated over the `length` steps of a direction (a multiply and an add
    per step, in the recurrence and in a reverse walk), over the `state` entries and over the 4 directions.
    The bound holds for any order of evaluation: sequential, chunked or a parallel prefix scan.
    """
    return gamma(16 + 2 * (length + state + NUM_DIRECTIONS))


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, name: str, tol: float) -> None:
    """Agreement within tol times the largest magnitude of the expected tensor (absolute, elementwise)."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=tol * scale, rtol=0, msg=lambda m: f"{name}: {m}"
    )
