#!/usr/bin/env python
"""Accuracy of the demo model in each inference precision (precision.py), for BENCHMARKS.md.

    python reports/demo/evaluate_precision.py --data DATA --babble tests/fixtures/babble_all.wav \
        --output reports/demo/precision.json

Per precision (float32, bfloat16, and int8 by both routes of inference/int8.py: torch.ao's dynamic quantisation and
torchao's quantize_), with the test-split evaluation of evaluate_demo.py (same clips, same
metrics, same babble digits): mAP over the single clips and the 10 s scenes, digit top-1 on the held-out digit
clips, digits in real babble at 10 dB (10 s excerpts), and the largest logit difference to float32 on those
clips. Also: logits of the converted tiny parity model (tests/fixtures/original_tiny) against float32, and the median
time of one forward of a 10 s clip in each precision (wall and CPU ms, the run's thread count).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

from transformers_dass.audio.io import load_audio
from transformers_dass.inference.classify import classify_waveform
from transformers_dass.inference.loading import demo_model_path, load_model
from transformers_dass.inference.precision import apply_precision
from transformers_dass.training.data import LabelEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_demo import babble_digits, split_scores, subset_metrics, test_clips  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import make_demo_dataset as demo  # noqa: E402

# int8 is the library's default route (int8.DEFAULT_INT8_ROUTE); int8-dynamic and int8-torchao name both routes.
PRECISIONS = ("float32", "bfloat16", "int8-dynamic", "int8-torchao")
INT8_ROUTES = {"int8-dynamic": "dynamic", "int8-torchao": "torchao"}


def apply(model, precision: str):
    """`model` (float32) in `precision`, an int8 route named where it is one."""
    if precision in INT8_ROUTES:
        return apply_precision(model, "int8", int8_route=INT8_ROUTES[precision])
    return apply_precision(model, precision)


def forward_ms(model, repeats: int = 15) -> dict:
    """Median wall and CPU milliseconds of one forward of a 10 s clip (1024 frames, batch 1), after one warm-up: the
    speed of each precision measured in the same run as its accuracy."""
    import resource
    import statistics
    import time

    x = torch.randn(1, 1024, 128, generator=torch.Generator().manual_seed(0))
    walls, cpus = [], []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            model(x)
            after = resource.getrusage(resource.RUSAGE_SELF)
            walls.append(time.perf_counter() - start)
            cpus.append(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
    return {"wall_ms_10s_batch1": 1000 * statistics.median(walls), "cpu_ms_10s_batch1": 1000 * statistics.median(cpus)}


def parity_logits(precision: str) -> dict:
    """The converted tiny parity model (tests/fixtures/original_tiny, the authors' weights and inputs) in `precision`:
    largest |logit - float32 logit| per input length, and the float32 logits' range for scale."""
    from safetensors.torch import load_file

    from transformers_dass.model.conversion import build_model

    tensors = load_file(str(Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "original_tiny.safetensors"))
    base = build_model({k: v for k, v in tensors.items() if k.startswith("module.")}).eval()
    model = apply(copy.deepcopy(base), precision)
    out = {}
    with torch.inference_mode():
        for name in sorted(k for k in tensors if k.startswith("input.")):
            reference, logits = base(tensors[name]).logits, model(tensors[name]).logits.float()
            out[name] = {"max_abs_diff": float((logits - reference).abs().max()), "range": float(reference.max() - reference.min())}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    parser.add_argument("--babble", required=True)
    parser.add_argument("--babble-digits", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    folder = args.model or demo_model_path()
    encoder = LabelEncoder.from_csv(args.data / "labels.csv")
    clips = test_clips(args.data)
    targets = np.stack([encoder.encode(labels) for _, labels, _ in clips])
    singles = [i for i, (_, _, line) in enumerate(clips) if line["kind"] == "single"]
    scenes = sorted(set(range(len(clips))) - set(singles))
    digits = [i for i in singles if clips[i][2]["labels"][0] in demo.DIGITS]
    truth = {i: encoder.names.index(clips[i][2]["labels"][0]) for i in singles}
    babble = load_audio(args.babble, sampling_rate=16000)
    results, reference = {"model": str(folder), "threads": torch.get_num_threads()}, {}
    for precision in PRECISIONS:
        loaded = load_model(folder, "float32")
        model, extractor = apply(loaded.model, precision), loaded.extractor
        single_scores = split_scores(model, extractor, [clips[i] for i in singles])
        scene_scores = split_scores(model, extractor, [clips[i] for i in scenes], whole=True)
        top1 = dict(zip(singles, single_scores.argmax(1)))
        hits = [
            classify_waveform(model, extractor, wave, top_k=1)[0]["label"] == digit
            for wave, digit in babble_digits(args.babble_digits, args.seed, babble, 10.0)
        ]
        result = {
            **subset_metrics(single_scores, targets[singles], "test_singles"),
            **subset_metrics(scene_scores, targets[scenes], "test_scenes"),
            "digit_accuracy": float(np.mean([top1[i] == truth[i] for i in digits])),
            "babble10dB_10s_accuracy": float(np.mean(hits)),
        }
        result["parity_fixture_logits"] = parity_logits(precision)
        result.update(forward_ms(model))
        if precision == "float32":
            reference = {"singles": single_scores, "scenes": scene_scores}
        else:
            for name, scores in (("singles", single_scores), ("scenes", scene_scores)):
                diff = np.abs(scores - reference[name])
                spread = np.ptp(reference[name], axis=1).mean()
                result[f"max_abs_logit_diff_{name}"] = float(diff.max())
                result[f"mean_abs_logit_diff_{name}"] = float(diff.mean())
                result[f"top1_agreement_{name}"] = float(np.mean(scores.argmax(1) == reference[name].argmax(1)))
                result[f"mean_logit_range_{name}"] = float(spread)
        results[precision] = result
        print(precision, json.dumps(result), flush=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
