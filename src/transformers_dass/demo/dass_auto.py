"""Auto-class entry points of this DASS model folder, for `trust_remote_code=True`.

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
