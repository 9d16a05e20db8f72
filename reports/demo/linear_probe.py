#!/usr/bin/env python
"""Few-shot linear probes on DASS clip embeddings, against mean log-mel features and a random DASS.

    python reports/demo/linear_probe.py --test /work/data25/test --train /work/data25/train \
        --cache /work/probe_cache --output reports/demo/linear_probe.json

Features of each single-label clip (clips shorter than 10.24 s zero-padded to it, as `dass classify` does):
- `dass`: the bundled demo model's clip embedding, `DassModel`'s `pooler_output` (what `dass tag --embeddings`
  writes; `model.readout.read_out(..., embeddings=True)`), 256 values;
- `log-mel`: the mean over the clip's own frames (padding left out) of the same 128-bin Kaldi fbank the model sees;
- `random DASS`: the embedding of a DASS of the demo model's config with freshly initialised weights (seed 0): what
  the architecture and the padding give without training.

Each is computed once per split and cached (`--cache`). A probe is multinomial logistic regression in torch: the
features standardised with the mean and standard deviation of the shots, L2 penalty lambda on the weights, full-batch
L-BFGS. `--draws` random draws of k shots per class (the same draws for every feature set and lambda); accuracy on
the evaluation clips, mean and standard deviation over the draws (and macro average precision, one class against the
rest, by `training.metrics.average_precision`). Each lambda of `--l2` is run; with a handful of shots there is no
validation set to choose it on, so the table shows, per cell, the lambda with the best mean accuracy on the
evaluation clips: optimistic, alike for every feature set (the JSON holds every lambda).

Tasks (all on the single-label clips):
- `class`: the 16 classes the demo model was trained to tag (its embeddings are expected to separate them);
- `background`: babble, white, pink or brown noise, or near-silence: never a label in training (the model was
  trained to tag the sound in front of it whatever the background);
- `accent`: which of the 8 espeak-ng English accents spoke a digit (digit clips only): never a label either;
- `voice`: which espeak-ng voice variant spoke a digit (the test split's variants with at least 12 digit clips);
- `rate`: the speaking-rate band of a digit (the test split's 4 bands, 80-95 ... 260-280 words per minute).
Settings: `train->test`: shots from the train split (train voices; clips the demo model was trained on), evaluated on
every clip of the test split (held-out voice variants and speaking rates); `test->test`: shots from the test split,
evaluated on its remaining clips (k is capped so that every class keeps 2 clips to evaluate). `voice` and `rate` are
`test->test` only: the train split's variants and rate bands are others than the test split's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from transformers_dass import DassForAudioClassification
from transformers_dass.audio.decoding import decode_audio
from transformers_dass.inference.features import waveform_features
from transformers_dass.inference.loading import load_model
from transformers_dass.model.readout import read_out
from transformers_dass.training.metrics import average_precision

FEATURES = ("dass", "log-mel", "random DASS")
TASKS = ("class", "background", "accent", "voice", "rate")
TEST_ONLY = ("voice", "rate")  # the train split has other voice variants and rate bands
MIN_VOICE_CLIPS = 12
SHOTS = (1, 5, 20)


def read_metadata(folder: Path, split: str) -> dict[str, dict]:
    """{id: {class, background, accent, voice, rate}} of the single-label clips of `split` ("" where a property
    does not apply: events have no voice)."""
    bands = json.loads((folder / "manifest.json").read_text())["splits"][split].get("rates_wpm")
    found = {}
    for line in (folder / f"{split}.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] != "single":
            continue
        event = entry["events"][0]
        accent, _, variant = event.get("voice", "").partition("+")
        rate = ""
        if "rate_wpm" in event and isinstance(bands, list):
            rate = next(f"{low}-{high}" for low, high in bands if low <= event["rate_wpm"] <= high)
        found[entry["video_id"]] = {"class": entry["labels"][0], "background": entry["background"], "accent": accent,
                                    "voice": variant, "rate": rate}  # fmt: skip
    return found


def read_split(folder: Path, split: str) -> list[dict]:
    """The single-label clips of `split` in `folder`: id and audio value."""
    meta = read_metadata(folder, split)
    clips = []
    for path in sorted(folder.glob(f"{split}-*.parquet")):
        for row in pq.read_table(path, columns=["video_id", "audio"]).to_pylist():
            entry = meta.get(row["video_id"])
            if entry is None:
                continue
            clips.append({"id": row["video_id"], "audio": row["audio"]})
    return clips


@torch.inference_mode()
def compute_features(clips: list[dict], model, random_model, extractor, batch_size: int) -> dict[str, np.ndarray]:
    """{feature name: (clips, dims) float32} for the clips, in their order."""
    found = {name: [] for name in FEATURES}
    for start in range(0, len(clips), batch_size):
        recordings = [waveform_features(decode_audio(c["audio"]), extractor) for c in clips[start : start + batch_size]]
        batch = torch.stack([r.input_values for r in recordings])  # all padded to 1024 frames: one length
        found["dass"].append(read_out(model, batch, (), embeddings=True).embeddings.numpy())
        found["random DASS"].append(read_out(random_model, batch, (), embeddings=True).embeddings.numpy())
        found["log-mel"].append(np.stack([r.input_values[: r.audio_frames].mean(0).numpy() for r in recordings]))
        print(f"  {start + len(recordings)}/{len(clips)} clips", flush=True)
    return {name: np.concatenate(parts).astype(np.float32) for name, parts in found.items()}


def cached_split(folder: Path, split: str, cache: Path, models, batch_size: int) -> dict:
    """Features (from `cache` when computed before) and the properties of a split's single clips."""
    path = cache / f"{folder.name}_{split}.npz"
    if path.exists():
        stored = np.load(path, allow_pickle=False)
        data = {key: stored[key] for key in ("id", *FEATURES)}
    else:
        clips = read_split(folder, split)
        print(f"{folder}/{split}: {len(clips)} single clips", flush=True)
        started = time.perf_counter()
        data = {"id": np.array([c["id"] for c in clips]), **compute_features(clips, *models, batch_size)}
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data)
    meta = read_metadata(folder, split)
    for task in TASKS:
        data[task] = np.array([meta[key][task] for key in data["id"]])
    if split == "test":  # voices with too few digit clips to draw shots from and still evaluate are left out
        names, counts = np.unique(data["voice"], return_counts=True)
        rare = set(names[counts < MIN_VOICE_CLIPS])
        data["voice"] = np.array(["" if v in rare else v for v in data["voice"]])
    return data


def fit_probe(x: np.ndarray, y: np.ndarray, classes: int, l2: float):
    """Multinomial logistic regression on standardised features: returns a function (n, d) -> (n, classes) probs."""
    x = torch.from_numpy(x).double()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    targets = torch.from_numpy(y).long()
    weight = torch.zeros(z.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=200, tolerance_grad=1e-9,
                                  line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight + bias, targets) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    weight, bias = weight.detach(), bias.detach()
    return lambda new: ((torch.from_numpy(new).double() - mean) / std @ weight + bias).softmax(-1).numpy()


def draw_shots(labels: np.ndarray, classes: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k random clips of every class."""
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in range(classes)])


def probe_scores(train_x, train_y, eval_x, eval_y, classes, l2) -> tuple[float, float]:
    """(accuracy, macro AP) of a probe fitted on (train_x, train_y), on (eval_x, eval_y)."""
    probs = fit_probe(train_x, train_y, classes, l2)(eval_x)
    accuracy = float((probs.argmax(1) == eval_y).mean())
    aps = [average_precision(probs[:, c], (eval_y == c).astype(float)) for c in range(classes)]
    return accuracy, float(np.nanmean(aps))


def run_task(task: str, train: dict, test: dict, draws: int, l2s: list[float], seed: int) -> list[dict]:
    """Every (setting, features, k, lambda) of one task: mean and std over `draws` of accuracy and macro AP."""
    keep_train = (train[task] != "") & (task not in TEST_ONLY)
    keep_test = test[task] != ""
    names = sorted(set(train[task][keep_train]) | set(test[task][keep_test]))
    index = {name: i for i, name in enumerate(names)}
    train_y = np.array([index[v] for v in train[task][keep_train]])
    test_y = np.array([index[v] for v in test[task][keep_test]])
    smallest_test_class = np.bincount(test_y, minlength=len(names)).min()
    results = []
    for setting in ("test->test",) if task in TEST_ONLY else ("train->test", "test->test"):
        for k in SHOTS:
            if setting == "test->test" and k > smallest_test_class - 2:
                k_used = smallest_test_class - 2  # at least 2 clips of each class left to evaluate
                if k_used in [r["k"] for r in results if r["setting"] == setting] or k_used < 1:
                    continue
            else:
                k_used = k
            for feature, l2 in ((f, l2) for f in FEATURES for l2 in l2s):
                train_x, test_x = train[feature][keep_train], test[feature][keep_test]
                rng = np.random.default_rng(seed)
                scores = []
                for _ in range(draws):
                    if setting == "train->test":
                        shots = draw_shots(train_y, len(names), k_used, rng)
                        scores.append(probe_scores(train_x[shots], train_y[shots], test_x, test_y, len(names), l2))
                    else:
                        shots = draw_shots(test_y, len(names), k_used, rng)
                        rest = np.setdiff1d(np.arange(len(test_y)), shots)
                        scores.append(probe_scores(test_x[shots], test_y[shots], test_x[rest], test_y[rest],
                                                   len(names), l2))  # fmt: skip
                accuracy, ap = np.array(scores).T
                results.append(
                    {
                        "task": task, "setting": setting, "features": feature, "k": int(k_used), "l2": l2,
                        "classes": len(names), "accuracy_mean": float(accuracy.mean()),
                        "accuracy_std": float(accuracy.std()), "macro_ap_mean": float(ap.mean()),
                        "macro_ap_std": float(ap.std()), "draws": draws,
                    }
                )  # fmt: skip
    return results


def markdown(results: list[dict]) -> str:
    """One table per task: rows setting x features, columns k, accuracy % mean ± std."""
    lines = []
    for task in TASKS:
        rows = [r for r in results if r["task"] == task]
        if not rows:
            continue
        settings = [s for s in ("train->test", "test->test") if any(r["setting"] == s for r in rows)]
        ks = {s: sorted({r["k"] for r in rows if r["setting"] == s}) for s in settings}
        lines += [f"\n**{task}** ({rows[0]['classes']} classes; chance {100 / rows[0]['classes']:.1f} %)\n",
                  "| shots from -> evaluated on | features | " + " | ".join(f"k = {k}" for k in SHOTS) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in SHOTS) + " |"]  # fmt: skip
        for setting in settings:
            for feature in FEATURES:
                cells = []
                for position in range(len(SHOTS)):
                    if position >= len(ks[setting]):
                        cells.append("—")
                        continue
                    k = ks[setting][position]
                    cell = [r for r in rows if r["setting"] == setting and r["features"] == feature and r["k"] == k]
                    r = max(cell, key=lambda r: r["accuracy_mean"])
                    shown = "" if k == SHOTS[position] else f", k = {k}"
                    cells.append(f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} "
                                 f"<sub>(λ {r['l2']:g}{shown})</sub>")  # fmt: skip
                lines.append(f"| {setting} | {feature} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", type=Path, default=Path("/work/data25/test"), help="folder of the test split")
    parser.add_argument("--train", type=Path, default=Path("/work/data25/train"), help="folder of the train split")
    parser.add_argument("--cache", type=Path, default=Path("/work/probe_cache"), help="features computed once here")
    parser.add_argument("--output", type=Path, default=Path("reports/demo/linear_probe.json"))
    parser.add_argument("--draws", type=int, default=10, help="random draws of the shots per cell")
    parser.add_argument("--l2", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1],
                        help="L2 penalties on the probe's weights to try")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(None, dtype=None)  # the bundled demo model, float32
    torch.manual_seed(args.seed)
    random_model = DassForAudioClassification(loaded.model.config).eval()
    models = (loaded.model.eval(), random_model, loaded.extractor)
    started = time.perf_counter()
    train = cached_split(args.train, "train", args.cache, models, args.batch_size)
    test = cached_split(args.test, "test", args.cache, models, args.batch_size)
    results = []
    for task in TASKS:
        results += run_task(task, train, test, args.draws, args.l2, args.seed)
    seconds = time.perf_counter() - started
    table = markdown(results)
    print(table)
    counts = {"train": len(train["id"]), "test": len(test["id"])}
    report = {"arguments": {k: str(v) for k, v in vars(args).items()}, "clips": counts, "seconds": round(seconds, 1),
              "results": results}  # fmt: skip
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"-> {args.output} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
