"""A small spoken-keyword dataset in the form audio datasets take on the Hub: parquet shards `train-*.parquet` and
`validation-*.parquet` with an `audio` column (`Audio`, wav bytes at 16 kHz) and a `label` column (`ClassLabel`).

Speech comes from espeak-ng through `scripts/make_demo_dataset.py`'s `speak`; the validation split is spoken by
voice variants that the train split never uses (held-out voices). Needs espeak-ng and sox.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile


def make_keyword_dataset(root: Path, words: tuple[str, ...], train_per_word: int, eval_per_word: int,
                         seed: int = 0) -> Path:
    """Write `root/train-00000-of-00001.parquet` and `root/validation-00000-of-00001.parquet`; returns `root`."""
    from datasets import Audio, ClassLabel, Dataset, Features, Value

    from tests.test_train_script import load_script

    demo = load_script("make_demo_dataset")
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": (train_per_word, demo.TRAIN_VARIANTS), "validation": (eval_per_word, demo.TEST_VARIANTS)}
    for split, (per_word, variants) in splits.items():
        rows = {"audio": [], "label": []}
        for label, word in enumerate(words):
            for i in range(per_word):
                voice = f"{rng.choice(demo.ACCENTS)}+{rng.choice(variants)}"
                samples = demo.speak(word, voice, int(rng.integers(110, 200)), int(rng.integers(20, 80)))
                buffer = io.BytesIO()
                soundfile.write(buffer, samples, demo.RATE, format="WAV", subtype="PCM_16")
                rows["audio"].append({"bytes": buffer.getvalue(), "path": f"{split}/{word}_{i}.wav"})
                rows["label"].append(label)
        raw = Features({"audio": {"bytes": Value("binary"), "path": Value("string")},
                        "label": ClassLabel(names=list(words))})
        # A struct of bytes and path becomes an `Audio` column without encoding anything (no torchcodec needed).
        dataset = Dataset.from_dict(rows, features=raw).cast_column("audio", Audio(sampling_rate=demo.RATE))
        dataset.to_parquet(str(root / f"{split}-00000-of-00001.parquet"))
    return root
