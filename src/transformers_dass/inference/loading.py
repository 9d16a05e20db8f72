"""Loading a DASS model for inference: the one function every front end calls (`load_model`).

`load_model(name_or_path, dtype)` takes a folder, a Hub id or None (the demo model bundled with the package),
resolves the precision for the device and returns a `LoadedModel`: the model in eval mode and in that precision,
its feature extractor, and the precision with the reason it was taken, which the front end says once.

Errors name the folder and what is wrong with it.

`from_pretrained` on a damaged folder fails deep inside transformers or safetensors (a missing file, invalid
JSON, a header it cannot parse, a config of another model type that then mismatches every tensor), with a
traceback that does not say what to do. `check_model_folder` looks at the folder first; `load_model_and_extractor`
turns what only loading can find (a truncated weights file) into the same kind of `ModelFolderError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from ..model.configuration_dass import DassConfig
from .precision import apply_precision, resolve_dtype

# Weights files `from_pretrained` reads, in its order of preference (single file or sharded index).
WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
PREPROCESSOR_NAME = "preprocessor_config.json"
REMAKE_HINT = "convert the released checkpoint again with `dass convert --checkpoint FILE --output-dir DIR`"

__all__ = [
    "DEMO_MODEL_DIR",
    "LoadedModel",
    "ModelFolderError",
    "check_model_folder",
    "demo_model_path",
    "load_model",
    "load_model_and_extractor",
]

# The small demo model shipped inside the package (spoken digits and six synthetic sounds, distilled on this
# project's synthetic dataset: `scripts/make_demo_dataset.py`, `reports/demo/`), so that `dass classify FILE`
# runs offline right after installation. A demonstration of the stack, not a general audio tagger: for AudioSet's
# 527 classes convert a released DASS checkpoint (`dass convert`).
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "demo"


@dataclass
class LoadedModel:
    """A model ready for inference.

    Attributes:
        model: the `DassForAudioClassification`, in eval mode, in `dtype`.
        extractor: its `DassFeatureExtractor`.
        dtype: the precision it runs in ("float32", "bfloat16" or "int8").
        reason: why that precision, one line, e.g. "bfloat16: this CPU has AVX512-BF16".
        name_or_path: the folder or Hub id it came from.
    """

    model: object
    extractor: object
    dtype: str
    reason: str
    name_or_path: str


def demo_model_path() -> str:
    """Folder of the bundled demo model (config.json, model.safetensors, preprocessor_config.json, dass_auto.py,
    README.md)."""
    if not (DEMO_MODEL_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall transformers-dass "
            "(`pip install --force-reinstall transformers-dass`) or pass --model DIR"
        )
    return str(DEMO_MODEL_DIR)


def load_model(name_or_path: str | os.PathLike | None = None, dtype: str = "auto", device="cpu") -> LoadedModel:
    """The model of a folder or Hub id (None: the bundled demo model) in the precision `dtype` resolves to.

    Args:
        name_or_path: a converted DASS folder or Hub id; None for the demo model.
        dtype: one of `precision.DTYPE_CHOICES` ("auto": bfloat16 where the device computes it natively, else
            float32); None keeps the weights as saved.
        device: where it will run; decides what "auto" takes.

    Raises:
        ModelFolderError: the folder is missing, incomplete or damaged, or the Hub id cannot be loaded.
        ValueError: an unknown `dtype`.
    """
    source = demo_model_path() if name_or_path is None else os.fspath(name_or_path)
    if dtype is not None:
        choice, reason = resolve_dtype(dtype, device)  # a bad dtype fails before the weights are read
    model, extractor = load_model_and_extractor(source)
    if dtype is None:
        saved = str(model.dtype).removeprefix("torch.")
        return LoadedModel(model, extractor, saved, f"{saved}: as saved", source)
    return LoadedModel(apply_precision(model, choice), extractor, choice, reason, source)


class ModelFolderError(ValueError):
    """A model folder (or Hub id) that cannot be loaded; the message names it and the fix."""


def check_model_folder(folder: str | os.PathLike) -> None:
    """Raise a `ModelFolderError` unless `folder` is a directory with a DASS config.json and a weights file."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelFolderError(f"model folder {folder} does not exist; check the path (or pass a Hub model id)")
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is a file, not a model folder; pass the folder that holds config.json")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFolderError(
            f"model folder {folder} has no config.json: it is not a saved model; pass a folder written by "
            f"`dass convert` or `save_pretrained`, or {REMAKE_HINT}"
        )
    _check_config(config_path)
    if not any((folder / name).is_file() for name in WEIGHTS_NAMES):
        raise ModelFolderError(
            f"model folder {folder} has config.json but no weights (model.safetensors); copy the weights file "
            f"into it or {REMAKE_HINT}"
        )


def _check_config(path: Path) -> None:
    """Raise a `ModelFolderError` unless `path` is a JSON object whose model_type is DASS's."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path} is not valid JSON ({err}); restore the file or {REMAKE_HINT}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != DassConfig.model_type:
        if not isinstance(config, dict):
            found = f"a JSON {type(config).__name__}, not an object"
        else:
            found = f"model_type {model_type!r}" if "model_type" in config else "no model_type"
        raise ModelFolderError(
            f"{path} is not a DASS config ({found}, expected model_type {DassConfig.model_type!r}); pass the folder "
            "of a DASS model"
        )


def load_model_and_extractor(name_or_path: str):
    """The `DassForAudioClassification` (in eval mode) and `DassFeatureExtractor` of a folder or Hub id.

    A folder without preprocessor_config.json (Hub remote-code layout) gets the default DASS features.

    Raises:
        ModelFolderError: the folder is missing, incomplete or damaged, or the Hub id cannot be loaded.
    """
    from ..model.modeling_dass import DassForAudioClassification

    local = os.path.isdir(name_or_path) or _looks_like_path(name_or_path)
    if local:
        check_model_folder(name_or_path)
    # Loaded on its own first, so that a bad value in config.json is not reported as broken weights.
    _load(DassConfig, name_or_path, "config.json", f"correct the value or {REMAKE_HINT}")
    weights_fix = f"the file is damaged or incomplete, or does not fit config.json: copy it again or {REMAKE_HINT}"
    model = _load(DassForAudioClassification, name_or_path, "the weights", weights_fix)
    return model.eval(), _load_extractor(name_or_path, local)


def _load_extractor(name_or_path: str, local: bool):
    """The preprocessor_config.json of the folder or Hub id; the default DASS features when it has none."""
    from ..model.feature_extraction_dass import DassFeatureExtractor

    if not local:
        try:
            return DassFeatureExtractor.from_pretrained(name_or_path)
        except OSError:  # the Hub remote-code repositories ship no preprocessor_config.json
            return DassFeatureExtractor()
    if not os.path.isfile(os.path.join(name_or_path, PREPROCESSOR_NAME)):
        return DassFeatureExtractor()
    return _load(DassFeatureExtractor, name_or_path, PREPROCESSOR_NAME, f"copy it again or {REMAKE_HINT}")


def _looks_like_path(name: str) -> bool:
    """Whether `name` can only be a local path (a Hub id is `name` or `owner/name`, never absolute or dotted)."""
    return os.path.isabs(name) or name.startswith(".") or name.count("/") > 1 or "\\" in name


def _load(cls, name_or_path: str, what: str, fix: str):
    """`cls.from_pretrained(name_or_path)`, its loading errors turned into one `ModelFolderError` line."""
    try:
        return cls.from_pretrained(name_or_path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        lines = str(err).strip().splitlines()
        reason = lines[0].rstrip(".") if lines else type(err).__name__
        if os.path.isdir(name_or_path):
            raise ModelFolderError(f"could not load {what} of model folder {name_or_path}: {reason}; {fix}") from None
        raise ModelFolderError(
            f"{name_or_path} is neither a local model folder nor a model that could be loaded from the Hub "
            f"({reason}); check the path"
        ) from None
