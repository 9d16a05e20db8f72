"""Run one of transformers' example scripts unmodified: `python tests/example_runner.py SCRIPT [ARGS...]`.

datasets 5 decodes `Audio` columns only through torchcodec. Where torchcodec cannot be imported (here the
registry's wheel is a CUDA build that does not load next to a CPU-only torch), this runner swaps that one step,
`datasets.features.Audio.decode_example`, for a soundfile reader that returns what the examples read of a decoded
clip: `{"array", "sampling_rate", "path"}`. Nothing else changes: the script file is executed as it is, in a
process that has not imported transformers_dass (checked), so the DASS folder is found through its `auto_map`.
"""

from __future__ import annotations

import io
import runpy
import sys

import numpy as np


def torchcodec_loads() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # ImportError, or OSError from a wheel whose libraries do not load here
        return False
    return True


def decode_with_soundfile(self, value, token_per_repo_id=None) -> dict:
    """`Audio.decode_example` for wav/flac/ogg bytes or local paths: mono float32 at the file's rate, which must
    be the column's `sampling_rate` when it sets one (this reader does not resample)."""
    import soundfile

    source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
    samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    if self.sampling_rate is not None and rate != self.sampling_rate:
        raise ValueError(
            f"{value.get('path')}: {rate} Hz audio in a {self.sampling_rate} Hz column; this soundfile reader does "
            "not resample: write the dataset at the column's rate, or install a torchcodec that loads."
        )
    return {"path": value.get("path"), "array": samples.mean(axis=1).astype(np.float32), "sampling_rate": rate}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python tests/example_runner.py SCRIPT [ARGS...]")
    if "transformers_dass" in sys.modules:
        raise SystemExit("transformers_dass is already imported: the example must find DASS on its own")
    if not torchcodec_loads():
        from datasets.features import Audio

        Audio.decode_example = decode_with_soundfile
    script, *args = argv
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
