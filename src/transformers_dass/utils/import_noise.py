"""Known-harmless lines that importing torchao logs, dropped by name so that `dass` commands keep a clean stderr.

transformers imports torchao as soon as it is installed (`transformers.quantizers.auto` -> `quantizer_torchao`, on
the first import of `PreTrainedModel`), and torchao 0.18 then logs, on a CPU-only torch:
- "Failed to load .../torchao/_C_mxfp8...so" and ".../_C_cutlass_90a...so": its CUDA kernels (MX formats for Blackwell,
  CUTLASS for Hopper), which a CPU build can never load; nothing on the CPU uses them;
- two torch pytree lines, "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by
  torch.compile ...": torchao registering enums in a way torch 2.13 deprecates, which is torchao's to change.
`silence_torchao_import_noise()` adds a filter to exactly those two loggers that drops exactly those messages; every
other record (a real failure to load a CPU kernel, other deprecations) still shows. Call it before transformers'
modeling code is imported (the package's `__init__` does).
"""

from __future__ import annotations

import logging
import re

__all__ = ["KNOWN_NOISE", "silence_torchao_import_noise"]

# logger name -> messages it logs when torchao is imported on a CPU-only torch, known to be harmless.
KNOWN_NOISE = {
    "torchao": re.compile(r"Failed to load \S*torchao[/\\]_C_(mxfp8|cutlass_90a)\S*\.so: "),
    "torch.utils._pytree": re.compile(
        r"<enum '(KernelPreference|ScaleCalculationMode)'> is an Enum subclass and is now natively supported by torch\.compile"
    ),
}


class _DropKnownNoise(logging.Filter):
    def __init__(self, pattern: re.Pattern):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def silence_torchao_import_noise() -> None:
    """Install the filters (once: a second call adds nothing)."""
    for name, pattern in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropKnownNoise) for existing in logger.filters):
            logger.addFilter(_DropKnownNoise(pattern))
