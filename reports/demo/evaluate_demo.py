#!/usr/bin/env python
"""Test-split numbers of the demo models, and spoken digits in real babble, for reports/demo/README.md.

    python reports/demo/evaluate_demo.py --data DATA --models teacher=RUNS/ast_teacher \
        student=RUNS/student_nokd student_kd=RUNS/student_kd --babble ../shared/fixtures/babble_all.wav \
        --output reports/demo/results.json

Per model:
- test mAP / mAUC over the 16 classes on the 320 single-label test clips (all models, 3.2 s inputs), and for DASS
  also on the 120 multi-label 10 s scenes taken whole (AST's position embeddings stop at its 3.2 s training length);
- digit accuracy: top-1 over all 16 labels on the single-label digit clips of the test split (voices and rates
  that training never used), and event accuracy likewise on the single-label event clips;
- digits in real babble: `n` digits spoken by held-out espeak-ng voice variants at held-out rates, each mixed into
  a random excerpt of a real babble recording (not used in training) at 10 dB SNR (digit RMS over babble RMS of the
  excerpt), excerpts of 3 s and, for DASS only, of 10 s and the whole 15 s recording; classified exactly as `dass classify` does
  (`transformers_dass.inference.classify.classify_waveform`); accuracy = top-1 label is the digit.
- CPU latency of one 3.2 s input (and 10 s for DASS), median of 5 after one warm-up, threads as OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForAudioClassification

from transformers_dass import DassFeatureExtractor
from transformers_dass.audio.decoding import decode_audio
from transformers_dass.audio.io import load_audio
from transformers_dass.inference.classify import classify_waveform
from transformers_dass.training.data import LabelEncoder, load_audio_dataset
from transformers_dass.training.metrics import average_precision, tagging_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import make_demo_dataset as demo  # noqa: E402


def test_clips(data: Path):
    lines = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    rows = list(load_audio_dataset(data_files=str(data / "test-*.parquet")))
    by_id = {line["video_id"]: line for line in lines}
    return [(decode_audio(row["audio"]), row["labels"], by_id[row["video_id"]]) for row in rows]


@torch.inference_mode()
def split_scores(model, extractor, clips, whole: bool = False, batch_size: int = 16) -> np.ndarray:
    """Scores of clips: padded to the extractor's (training) length, or taken `whole` (the 10 s scenes)."""
    scores = []
    for start in range(0, len(clips), batch_size):
        waves = [clip[0] for clip in clips[start : start + batch_size]]
        length = {"max_length": None} if whole else {}
        features = extractor(waves, sampling_rate=16000, return_tensors="pt", **length)
        scores.append(model(features["input_values"]).logits.float().numpy())
    return np.concatenate(scores)


def subset_metrics(scores: np.ndarray, targets: np.ndarray, prefix: str) -> dict:
    return {f"{prefix}_{k}": v for k, v in tagging_metrics(scores, targets).items()}


def babble_digits(n: int, seed: int, babble: np.ndarray, excerpt_seconds: float | None, snr_db: float = 10.0):
    """(waveform, digit) pairs: held-out voices and rates, mixed into a babble excerpt at `snr_db`."""
    rng = np.random.default_rng(seed)
    voices = demo.split_voices("test")
    for i in range(n):
        digit = demo.DIGITS[i % len(demo.DIGITS)]
        speech, _ = demo.make_digit(rng, digit, voices)
        length = babble.size if excerpt_seconds is None else int(excerpt_seconds * demo.RATE)
        length = max(length, speech.size)
        start = int(rng.integers(0, babble.size - length + 1))
        noise = demo.scale_to_snr(babble[start : start + length].astype(np.float32), demo.rms(speech), snr_db)
        offset = int(rng.integers(0, length - speech.size + 1))
        noise[offset : offset + speech.size] += speech
        yield (0.5 * noise / np.abs(noise).max()).astype(np.float32), digit


def latency(model, extractor, seconds: float, whole: bool = False) -> float:
    noise = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
    length = {"max_length": None} if whole else {}
    x = extractor(noise, sampling_rate=16000, return_tensors="pt", **length)["input_values"]
    times = []
    with torch.inference_mode():
        for i in range(6):
            start = time.perf_counter()
            model(x)
            if i:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--models", nargs="+", required=True, help="NAME=FOLDER ...")
    parser.add_argument("--babble", required=True, help="a real babble recording (never used in training)")
    parser.add_argument("--babble-digits", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    encoder = LabelEncoder.from_csv(args.data / "labels.csv")
    clips = test_clips(args.data)
    targets = np.stack([encoder.encode(labels) for _, labels, _ in clips])
    singles = [i for i, (_, _, line) in enumerate(clips) if line["kind"] == "single"]
    babble = load_audio(args.babble, sampling_rate=16000)
    results = {"test_clips": len(clips), "babble_recording": str(args.babble), "models": {}}
    for spec in args.models:
        name, folder = spec.split("=", 1)
        model = AutoModelForAudioClassification.from_pretrained(folder).eval()
        extractor = DassFeatureExtractor.from_pretrained(folder)
        if [model.config.id2label[i] for i in range(model.config.num_labels)] != encoder.names:
            raise SystemExit(f"{folder}: its labels differ from {args.data / 'labels.csv'}")
        is_dass = model.config.model_type == "dass"
        single_scores = split_scores(model, extractor, [clips[i] for i in singles])
        top1 = np.zeros(len(clips), dtype=np.int64)
        top1[singles] = single_scores.argmax(1)
        truth = {i: encoder.names.index(clips[i][2]["labels"][0]) for i in singles}
        digits = [i for i in singles if clips[i][2]["labels"][0] in demo.DIGITS]
        events = [i for i in singles if clips[i][2]["labels"][0] in demo.EVENTS]
        result = {
            "parameters": model.num_parameters(),
            **subset_metrics(single_scores, targets[singles], "test_singles"),
            "digit_accuracy": float(np.mean([top1[i] == truth[i] for i in digits])),
            "digit_clips": len(digits),
            "event_accuracy": float(np.mean([top1[i] == truth[i] for i in events])),
            "event_clips": len(events),
            "latency_3.2s_s": latency(model, extractor, 3.2),
        }
        if is_dass:  # the 10 s scenes whole; AST's position embeddings stop at its 3.2 s training length
            scenes = sorted(set(range(len(clips))) - set(singles))
            scene_scores = split_scores(model, extractor, [clips[i] for i in scenes], whole=True)
            result.update(subset_metrics(scene_scores, targets[scenes], "test_scenes"))
            result["latency_10s_s"] = latency(model, extractor, 10.0, whole=True)
            every = np.zeros((len(clips), len(encoder.names)))
            every[singles], every[scenes] = single_scores, scene_scores
            binary = targets >= 0.5
            result["test_AP_per_class"] = {
                name: average_precision(every[:, k], binary[:, k]) for k, name in enumerate(encoder.names)
            }
        excerpts = [("3s", 3.0)]
        if is_dass:  # AST takes at most its trained 3.2 s
            excerpts += [("10s", 10.0), ("whole", None)]
        for label, excerpt in excerpts:
            hits = [
                classify_waveform(model, extractor, wave, top_k=1)[0]["label"] == digit
                for wave, digit in babble_digits(args.babble_digits, args.seed, babble, excerpt)
            ]
            result[f"babble10dB_{label}_accuracy"] = float(np.mean(hits))
        results["models"][name] = result
        print(name, json.dumps(result), flush=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
