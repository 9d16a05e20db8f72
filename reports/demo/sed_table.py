#!/usr/bin/env python
"""Markdown table of the "Say when" comparison: per training run, the SED scores of `scripts/evaluate_sed.py
--clip-map --no-timing` (its metrics.json) and the 600 s babble NIAH mAP of `scripts/run_niah.py` (its results.json,
max readout, mean over the needle positions).

    python reports/demo/sed_table.py "weak, mean=EVAL_DIR:NIAH_DIR" "strong=EVAL_DIR:NIAH_DIR" ...

With `--draws`, one row per model of PSDS1 / PSDS2 / collar F1 on each scene set that `reports/demo/sed_eval.sh`
evaluated it on (OUT_DIR: that script's output folder, one subfolder per set):

    python reports/demo/sed_table.py --draws "before=OUT_DIR" "frame skips=OUT_DIR"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("psds1", "psds2", "collar_f1")


def niah_map(folder: Path, readout: str = "max", seconds: float = 600.0) -> float | None:
    """Mean mAP (%) over the needle positions of `readout` at `seconds`, or None where the run has none."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    records = json.loads(path.read_text())["results"]
    values = [
        100 * r["mAP"]
        for r in records
        if r["status"] == "ok" and r.get("clip_pooling") == readout and r["haystack_seconds"] == seconds
    ]
    return sum(values) / len(values) if values else None


def row(name: str, report: dict, niah: float | None) -> str:
    metrics, floor = report["metrics"], report.get("no_timing", {})
    cells = [f"{metrics[key]:.3f} ({floor[key]:.3f})" if key in floor else f"{metrics[key]:.3f}" for key in COLUMNS]
    cells.append(f"{100 * metrics['clip_map']:.1f}" if "clip_map" in metrics else "—")
    cells.append(f"{niah:.1f}" if niah is not None else "—")
    return f"| {name} | " + " | ".join(cells) + " |"


def draws_table(specs: list[str]) -> None:
    """PSDS1 / PSDS2 / collar F1 of each model (NAME=OUT_DIR) on every scene set in its sed_eval.sh folder."""
    folders = [(name, Path(out)) for name, _, out in (spec.partition("=") for spec in specs)]
    sets = sorted({d.name for _, out in folders for d in out.iterdir() if (d / "metrics.json").is_file()},
                  key=lambda n: (int(n.rsplit("_", 1)[1]), n))  # fmt: skip
    header = [f"{n.split('_')[0]} ({n.rsplit('_', 1)[1]} scenes)" for n in sets]
    print("| model | " + " | ".join(header) + " |")
    print("| --- | " + " | ".join("---:" for _ in sets) + " |")
    for name, out in folders:
        cells = []
        for set_name in sets:
            path = out / set_name / "metrics.json"
            metrics = json.loads(path.read_text())["metrics"] if path.is_file() else None
            cells.append("—" if metrics is None else " / ".join(f"{metrics[key]:.3f}" for key in COLUMNS))
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=EVAL_DIR[:NIAH_DIR]")
    parser.add_argument("--draws", action="store_true", help="runs are NAME=OUT_DIR of reports/demo/sed_eval.sh")
    args = parser.parse_args()
    if args.draws:
        draws_table(args.runs)
        return
    print("| training | PSDS1 (no-timing floor) | PSDS2 (floor) | collar F1 (floor) | clip mAP, scenes | 600 s babble, max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for spec in args.runs:
        name, _, dirs = spec.partition("=")
        eval_dir, _, niah_dir = dirs.partition(":")
        report = json.loads((Path(eval_dir) / "metrics.json").read_text())
        print(row(name, report, niah_map(Path(niah_dir)) if niah_dir else None))


if __name__ == "__main__":
    main()
