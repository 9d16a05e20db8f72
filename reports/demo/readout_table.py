#!/usr/bin/env python
"""Markdown table of NIAH results.json files: mAP (%) per protocol and clip readout (rows) and haystack length
(columns), the mean over the needle positions run at that length; `(n)` after a value when fewer positions ran.
`--plot PNG` also draws all the records in one figure (`transformers_dass.evaluation.niah.sweep.plot_results`).

    python reports/demo/readout_table.py reports/demo/niah_readouts/*/results.json \
        --plot reports/demo/niah_readouts/niah.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def protocol(record: dict) -> str:
    if record["noise"] == "zeros":
        return f"zeros ({record['haystack_level']})"
    return f"{Path(record['noise']).stem} {record['snr_db']:g} dB ({record['haystack_level']})"


def length(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def table(records: list[dict]) -> str:
    values = defaultdict(list)
    for record in records:
        if record["status"] == "ok":
            key = (record["model"], protocol(record), record.get("clip_pooling", "mean"))
            values[key, record["haystack_seconds"]].append(100 * record["mAP"])
    lengths = sorted({seconds for _, seconds in values})
    rows = sorted({key for key, _ in values})
    positions = max(len(v) for v in values.values())
    lines = [
        "| model | protocol | readout | " + " | ".join(length(s) for s in lengths) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in lengths) + " |",
    ]
    for row in rows:
        cells = []
        for seconds in lengths:
            got = values.get((row, seconds))
            if not got:
                cells.append("—")
                continue
            mean = sum(got) / len(got)
            cells.append(f"{mean:.1f}" + (f" ({len(got)})" if len(got) < positions else ""))
        lines.append(f"| {row[0]} | {row[1]} | {row[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.json files of scripts/run_niah.py")
    parser.add_argument("--plot", help="PNG of every record (mAP against haystack duration)")
    args = parser.parse_args(argv)
    records = [r for path in args.results for r in json.loads(Path(path).read_text())["results"]]
    print(table(records))
    if args.plot:
        from transformers_dass.evaluation.niah.sweep import plot_results

        plot_results(records, Path(args.plot))


if __name__ == "__main__":
    main(sys.argv[1:])
