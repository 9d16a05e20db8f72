"""Optional dependencies: one way to import them, and one error that names the extra to install.

The core install is torch, transformers, safetensors, numpy and soundfile. Everything else (gradio, matplotlib,
onnx, pyarrow, datasets, evaluate, torchaudio) is imported only when a feature needs it, through `require`.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["install_hint", "require"]


def install_hint(extra: str) -> str:
    """The command that installs an extra of this package, e.g. `pip install "transformers-dass[demo]"`."""
    return f'pip install "transformers-dass[{extra}]"'


def require(module: str, extra: str, purpose: str, alternative: str | None = None) -> ModuleType:
    """Import `module` (e.g. "pyarrow.parquet") or raise an ImportError that says what needs it and how to get it.

    Args:
        module: the module to import.
        extra: the package extra that installs it ("demo", "onnx", ...), or a plain pip requirement ("torchaudio").
        purpose: what needs it, as the start of the sentence ("the DASS demo page").
        alternative: a way to do without it, appended to the message.

    Raises:
        ImportError: `{purpose} needs {package}, which is not installed: pip install ...`.
    """
    try:
        __import__(module)  # through builtins.__import__, which import hooks and test doubles replace
    except ImportError as error:
        package = module.split(".")[0]
        hint = install_hint(extra) if extra != package else f"pip install {package}"
        message = f"{purpose} needs {package}, which is not installed: {hint}"
        if alternative:
            message += f" ({alternative})"
        raise ImportError(message) from error
    return sys.modules[module]
