"""The small demo model shipped inside the package: `dass classify FILE` uses it when no `--model` is given.

It was distilled on this project's synthetic dataset (spoken digits `zero` ... `nine` and six synthetic sound
events, see `scripts/make_demo_dataset.py` and `reports/demo/`), so it runs offline right after installation. It
is a demonstration of the stack, not a general audio tagger: for AudioSet's 527 classes convert a released DASS
checkpoint (`dass convert`).
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo"


def demo_model_path() -> str:
    """Folder of the bundled demo model (config.json, model.safetensors, preprocessor_config.json, dass_auto.py,
    README.md)."""
    if not (DEMO_MODEL_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall transformers-dass "
            "(`pip install --force-reinstall transformers-dass`) or pass --model DIR"
        )
    return str(DEMO_MODEL_DIR)


__all__ = ["DEMO_MODEL_DIR", "demo_model_path"]
