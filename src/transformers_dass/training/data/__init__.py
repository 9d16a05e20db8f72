"""Data for training DASS: streamed AudioSet or local audio datasets, labels, augmentation and collation.

Audio is kept encoded in the datasets (`Audio(decode=False)`) and decoded in the collator with soundfile
(`audio.decoding`), so neither torchcodec nor ffmpeg is needed.
"""

from .augment import mix_rows, mixup, spec_augment
from .balancing import (
    ClassBalancedRepeat,
    class_balanced_stream,
    clip_weight,
    count_labels,
    load_label_counts,
    save_label_counts,
)
from .collator import DassAudioCollator
from .labels import LabelEncoder
from .loading import (
    AUDIOSET_DATASET,
    class_label_names,
    keep_audio_encoded,
    load_audio_dataset,
    split_for_node,
)
from .strong_labels import (
    EVENTS_COLUMN,
    MIN_STEP_COVERAGE,
    StrongLabelTable,
    event_targets,
    join_strong_labels,
    segment_key,
)
from .teacher_logits import TEACHER_LOGITS_COLUMN, TeacherLogitsTable

__all__ = [
    "AUDIOSET_DATASET",
    "ClassBalancedRepeat",
    "DassAudioCollator",
    "EVENTS_COLUMN",
    "LabelEncoder",
    "MIN_STEP_COVERAGE",
    "StrongLabelTable",
    "TEACHER_LOGITS_COLUMN",
    "TeacherLogitsTable",
    "class_balanced_stream",
    "class_label_names",
    "clip_weight",
    "count_labels",
    "event_targets",
    "join_strong_labels",
    "keep_audio_encoded",
    "load_audio_dataset",
    "load_label_counts",
    "mix_rows",
    "mixup",
    "save_label_counts",
    "segment_key",
    "spec_augment",
    "split_for_node",
]
