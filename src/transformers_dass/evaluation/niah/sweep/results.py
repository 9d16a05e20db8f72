"""Results of the NIAH sweep: results.json / results.csv rewritten after every point (so that a rerun resumes),
and the plot of mAP against haystack duration."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ....utils.optional import require
from .arguments import Point

logger = logging.getLogger(__name__)

CSV_COLUMNS = [
    "model",
    "model_path",
    "haystack_seconds",
    "haystack_frames",
    "needle_position",
    "noise",
    "snr_db",
    "haystack_level",
    "clip_pooling",
    "status",
    "mAP",
    "mAUC",
    "d_prime",
    "num_needles",
    "skipped_needles",
    "skipped_classes",
    "batch_size",
    "elapsed_s",
    "device",
    "error",
    "finished_at",
]
# Settings every point of one output folder must share; a rerun that changes them needs a new folder.
RUN_SETTINGS = (
    "dataset",
    "max_needles",
    "seed",
    "needle_frames",
    "ast_position_embeddings",
    "autocast",
    "labels",
)
# Records written before readouts were a dimension were mean-pooled.
DEFAULT_CLIP_POOLING = "mean"


class ResultStore:
    """results.json (run settings + records) and results.csv in an output folder, rewritten after each point."""

    def __init__(self, output_dir: str, run: dict):
        self.folder = Path(output_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.json_path = self.folder / "results.json"
        self.csv_path = self.folder / "results.csv"
        self.records: list[dict] = []
        self.run = run
        if self.json_path.exists():
            saved = json.loads(self.json_path.read_text())
            self._check_same_run(saved.get("run", {}), run)
            self.records = saved.get("results", [])
            self.run["models"] = {**saved["run"].get("models", {}), **run["models"]}

    @staticmethod
    def _check_same_run(saved: dict, run: dict) -> None:
        changed = [key for key in RUN_SETTINGS if saved.get(key) != run.get(key)]
        renamed = [
            name for name, path in run["models"].items() if saved.get("models", {}).get(name, path) != path
        ]
        if changed or renamed:
            what = [f"{key}: {saved.get(key)!r} -> {run.get(key)!r}" for key in changed]
            what += [f"model {name!r} now points to {run['models'][name]}" for name in renamed]
            raise ValueError(
                "the output folder holds results of a different run (" + "; ".join(what) + "); use another "
                "--output_dir, or the same settings to resume"
            )

    def finished(self, point: Point, poolings: list[str], retry_oom: bool) -> bool:
        """Whether every readout of the point is recorded (ok, or out of memory and not to be retried)."""
        done = {}
        for record in self.records:
            if _record_key(record)[:-1] == point.key:
                done[record.get("clip_pooling", DEFAULT_CLIP_POOLING)] = record["status"] == "ok" or (
                    record["status"] == "oom" and not retry_oom
                )
        return all(done.get(pooling, False) for pooling in poolings)

    def add(self, record: dict) -> None:
        key = _record_key(record)
        self.records = [r for r in self.records if _record_key(r) != key] + [record]
        self._write(self.json_path, json.dumps({"run": self.run, "results": self.records}, indent=2))
        lines = [",".join(CSV_COLUMNS)]
        for r in self.records:
            lines.append(",".join(_csv_cell(r.get(column)) for column in CSV_COLUMNS))
        self._write(self.csv_path, "\n".join(lines) + "\n")

    @staticmethod
    def _write(path: Path, text: str) -> None:
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(text)
        os.replace(partial, path)


def _record_key(record: dict) -> tuple:
    """The record's point key, then its readout."""
    point = Point(
        record["model"],
        record["haystack_seconds"],
        record["needle_position"],
        record["noise"],
        record["snr_db"],
        record["haystack_level"],
    )
    return point.key + (record.get("clip_pooling", DEFAULT_CLIP_POOLING),)


def _csv_cell(value) -> str:
    if value is None:
        return ""
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def plot_results(records: list[dict], path: Path) -> Path | None:
    """mAP (%) against haystack seconds (log axis): a line per model, noise setting and clip readout (mean over
    positions; max readouts dashed); out-of-memory points as crosses on the axis. None (with a warning) without
    matplotlib."""
    try:
        matplotlib = require("matplotlib", "plot", "niah.png")
    except ImportError as error:
        logger.warning(f"{error}: the figure is skipped")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lines: dict[str, dict[float, list[float]]] = {}
    failed: dict[str, set[float]] = {}
    for record in records:
        noise = record["noise"]
        if noise != "zeros":
            noise = f"{Path(noise).name} {record['snr_db']:g} dB"
        pooling = record.get("clip_pooling", DEFAULT_CLIP_POOLING)
        label = f"{record['model']} {pooling} ({noise}, {record['haystack_level']})"
        if record["status"] == "ok":
            lines.setdefault(label, {}).setdefault(record["haystack_seconds"], []).append(100 * record["mAP"])
        else:
            failed.setdefault(label, set()).add(record["haystack_seconds"])
    figure, axis = plt.subplots(figsize=(8, 5))
    for label in sorted(set(lines) | set(failed)):
        points = sorted((s, float(np.mean(v))) for s, v in lines.get(label, {}).items())
        style = "--" if " max (" in label else "-"
        (line,) = axis.plot(
            [s for s, _ in points], [m for _, m in points], marker="o", linestyle=style, label=label
        )
        oom = sorted(failed.get(label, ()))
        if oom:
            axis.plot(oom, [0.0] * len(oom), linestyle="none", marker="x", markersize=9, color=line.get_color())
    axis.set_xscale("log")
    axis.set_xlabel("haystack duration (s)")
    axis.set_ylabel("mAP (%)")
    axis.set_title("Audio needle in a haystack (x: out of memory)")
    axis.set_ylim(bottom=0)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path

