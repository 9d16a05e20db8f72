#!/usr/bin/env python
"""Audio Needle In A Haystack (NIAH) sweep: mAP of audio taggers against haystack duration.

Each labelled clip of a dataset (the needle, cut or padded to 1024 frames = 10 s) is placed at a relative position
in a haystack of each length (`transformers_dass.evaluation.niah.haystack.make_haystack`), every model tags the whole haystack, and
mAP / mAUC / d' are measured against the needles' labels (`transformers_dass.evaluation.niah.metric.compute_niah_metrics`).

    python scripts/run_niah.py --models dass=dass-small ast=MIT/ast-finetuned-audioset-10-10-0.4593 \
        --dataset_name agkphysics/AudioSet --dataset_config_name balanced --split test --max_needles 2000 \
        --lengths_seconds 10 50 250 1000 9000 --positions 0 0.5 1 --noise zeros --output_dir niah-out

Models: `name=path` (or only a path; the folder name is then the name), a DASS folder or Hub id, or an
Audio Spectrogram Transformer (`ASTForAudioClassification`). All must score the same labels (`--labels_csv`
gives the vocabulary, else the first model's config).

Data: `--dataset_name` (Hub, e.g. agkphysics/AudioSet, streamed), `--data_files` (parquet shards in the AudioSet
schema, e.g. those of scripts/precompute_teacher_logits.py), or `--audio_dir` with `--labels_file`, a CSV with
columns `file` (path relative to the folder) and `labels` (mids or display names joined by `--labels_separator`).
Audio is read with soundfile and resampled to 16 kHz by the package. Clips that cannot be decoded, are
digital silence, or have only labels outside the vocabulary are skipped and counted (`skipped_needles`).

Haystacks: `--noise zeros` (zeros in the normalised feature space, the authors' default), `white`, or a noise
file (e.g. babble) at each `--snr_db` against the needle's RMS. `--haystack_level features` splices the needle's
features between noise frames (the authors' method); `waveform` adds the needle waveform into the noise and
computes the features of the mixture: the background of each length is fixed (zero mean, RMS 0.05, seeded by
(seed, frames)) and its features are computed once; per needle only the frames over the needle are recomputed
(`transformers_dass.evaluation.niah.mixing.MixedHaystacks`). Haystacks are built one needle at a time. `--batch_size` needles go
through a model together at 10 s; a longer haystack uses `batch_size * needle frames / haystack frames` of them
(at least 1), so a batch holds about the same number of frames.

Clip readouts: `--clip_pooling mean max` scores every readout from the same forward of each haystack
(`transformers_dass.model.readout`): mean = the paper's average pooling (the model's logits), max = per label the highest
0.32 s step of the frame scores. AST has no frame scores: it is scored with its own output only (recorded as mean).
`--long_seconds S --long_positions 0.5 --long_max_needles N` thins the longest haystacks (from S seconds on).

AST with long inputs: AST has a learned position-embedding table for its training length (12 x 101 patches for
1024 frames). For a haystack of N frames the table is rebuilt for (N - 16) // 10 + 1 patch columns with
`transformers_dass.evaluation.niah.haystack.ast_position_embeddings` from the model's own 10 s table:
`--ast_position_embeddings interpolate` (default) resizes the patch grid along time by linear interpolation
(frequency rows unchanged, CLS and distillation token embeddings kept), as the authors' AST code does when it
loads the 10 s AudioSet model for a longer input; `sinusoidal` replaces the table with a 1-D sinusoidal one, as
the authors' run_NIAH.py does for an AST trained with sinusoidal embeddings. DASS needs nothing: it has no
positional embedding.

Outputs in `--output_dir`: results.json (run settings and one record per point), results.csv (the same records)
and niah.png (mAP against haystack duration, log axis, one line per model, noise setting and readout, mean over
positions; needs matplotlib, else skipped with a warning). A record is (model, haystack seconds, position, noise,
SNR, haystack level, clip readout); rerunning with the same output folder skips the points already there. A point
that runs out of memory is recorded with status "oom" (retried only with `--retry_oom`) and the sweep goes on. On
CPU the operating system may kill the process before Python sees an out-of-memory error.
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from transformers_dass.evaluation.niah.sweep import NiahArguments, run_sweep


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse the arguments, run the sweep (`transformers_dass.evaluation.niah.sweep.run_sweep`); returns its records."""
    (args,) = HfArgumentParser(NiahArguments).parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return run_sweep(args)


if __name__ == "__main__":
    main()
