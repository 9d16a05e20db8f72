"""What makes a DASS folder loadable by transformers' Auto classes without `import transformers_dass`.

A folder written by `save_pretrained` (config, feature extractor) or `dass convert` carries an `auto_map` whose
entries name `dass_auto.py`, a few lines written beside `config.json` that import the installed package. So
`AutoConfig` / `AutoFeatureExtractor` / `AutoModelForAudioClassification` /
`AutoModelForAudioFrameClassification.from_pretrained(folder, trust_remote_code=True)` work in a program that never imports this package (transformers' example scripts), and
a missing package is an ImportError that says to install it. No model code is written into the folder: the
classes come from the installed package, whichever version that is.
"""

from __future__ import annotations

from pathlib import Path

AUTO_MODULE_FILE = "dass_auto.py"
_MODULE = AUTO_MODULE_FILE.removesuffix(".py")

# `auto_map` of config.json and preprocessor_config.json: Auto class -> "module.Class" of AUTO_MODULE_FILE.
AUTO_MAP = {
    "AutoConfig": f"{_MODULE}.DassConfig",
    "AutoFeatureExtractor": f"{_MODULE}.DassFeatureExtractor",
    "AutoModel": f"{_MODULE}.DassModel",
    "AutoModelForAudioClassification": f"{_MODULE}.DassForAudioClassification",
    "AutoModelForAudioFrameClassification": f"{_MODULE}.DassForAudioFrameClassification",
}

AUTO_MODULE_SOURCE = '''"""Auto-class entry points of this DASS model folder, for `trust_remote_code=True`.

No model code lives here: the classes are those of the installed `transformers-dass` package
(`pip install transformers-dass`), which also registers model type "dass" with transformers' Auto classes.
"""

try:
    from transformers_dass import (
        DassConfig,
        DassFeatureExtractor,
        DassForAudioClassification,
        DassForAudioFrameClassification,
        DassModel,
    )
except ImportError as error:
    raise ImportError(
        "This folder holds a DASS model (model type 'dass'), whose code is the transformers-dass package: "
        "install it with `pip install transformers-dass`, then load the folder again."
    ) from error

__all__ = [
    "DassConfig",
    "DassFeatureExtractor",
    "DassForAudioClassification",
    "DassForAudioFrameClassification",
    "DassModel",
]
'''


def write_auto_module(save_directory: str | Path) -> Path:
    """Write `dass_auto.py` into `save_directory` (created if needed); returns its path."""
    path = Path(save_directory) / AUTO_MODULE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(AUTO_MODULE_SOURCE, encoding="utf-8")
    return path


__all__ = ["AUTO_MAP", "AUTO_MODULE_FILE", "AUTO_MODULE_SOURCE", "write_auto_module"]
