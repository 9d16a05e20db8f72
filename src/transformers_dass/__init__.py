"""DASS (Distilled Audio State Space models) as a native Hugging Face transformers model.

Importing this package registers model type "dass" with AutoConfig, AutoFeatureExtractor, AutoModel,
AutoModelForAudioClassification and AutoModelForAudioFrameClassification, so `from_pretrained` and
`pipeline("audio-classification")` work without `trust_remote_code`.
"""

from .utils.import_noise import silence_torchao_import_noise

silence_torchao_import_noise()  # before transformers' modeling code imports torchao (where it is installed)

from transformers import (  # noqa: E402
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForAudioFrameClassification,
)

from .model.configuration_dass import DassConfig  # noqa: E402
from .model.feature_extraction_dass import DassFeatureExtractor  # noqa: E402
from .model.modeling_dass import (  # noqa: E402
    DassAudioClassifierOutput,
    DassForAudioClassification,
    DassForAudioFrameClassification,
    DassFrameClassifierOutput,
    DassModel,
    DassModelOutput,
    DassPreTrainedModel,
)

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    """Register "dass" with the Auto classes; a no-op when already registered (e.g. on re-import)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if DassConfig.model_type in CONFIG_MAPPING:
        return
    AutoConfig.register(DassConfig.model_type, DassConfig)
    AutoFeatureExtractor.register(DassConfig, DassFeatureExtractor)
    AutoModel.register(DassConfig, DassModel)
    AutoModelForAudioClassification.register(DassConfig, DassForAudioClassification)
    AutoModelForAudioFrameClassification.register(DassConfig, DassForAudioFrameClassification)


_register_auto_classes()


def load_niah_metric(**kwargs):
    """The Audio Needle In A Haystack metric as an `evaluate` module (offline); needs the `niah` extra.

    See `transformers_dass.evaluation.niah.metric.load_niah_metric`; imported lazily so that `evaluate` stays
    optional.
    """
    from .evaluation.niah.metric import load_niah_metric as _load

    return _load(**kwargs)


# NIAH's haystack builders are public names of the package, imported on first use: `import transformers_dass`
# (which every `from_pretrained` of a DASS folder runs) loads the model, not the evaluation code.
_LAZY = {"make_haystack": "evaluation.niah.haystack", "make_haystack_waveform": "evaluation.niah.haystack"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DassAudioClassifierOutput",
    "DassConfig",
    "DassFeatureExtractor",
    "DassForAudioClassification",
    "DassForAudioFrameClassification",
    "DassFrameClassifierOutput",
    "DassModel",
    "DassModelOutput",
    "DassPreTrainedModel",
    "load_niah_metric",
    "make_haystack",
    "make_haystack_waveform",
]
