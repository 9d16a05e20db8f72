#!/usr/bin/env python
"""Keep the clips of one kind ("single" or "scene") of a demo split, as one parquet file.

    python reports/demo/select_clips.py --data DATA --split train --kind single --output DATA/train-single.parquet

The demo models train on the 1-3 s single-label clips only (3.2 s inputs, so that a 2-core CPU gets through
enough steps); the 10 s scenes serve as test clips and NIAH needles.
"""

import argparse
import json
from pathlib import Path

from datasets import Audio, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", required=True)
    parser.add_argument("--kind", required=True, choices=["single", "scene"])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    lines = [json.loads(line) for line in (args.data / f"{args.split}.jsonl").read_text().splitlines()]
    keep = {line["video_id"] for line in lines if line["kind"] == args.kind}
    rows = load_dataset("parquet", data_files=str(args.data / f"{args.split}-0*.parquet"), split="train")
    rows = rows.cast_column("audio", Audio(decode=False)).filter(lambda row: row["video_id"] in keep)
    rows.sort("video_id").cast_column("audio", Audio()).to_parquet(args.output)
    print(f"{args.output}: {len(rows)} {args.kind} clips of {args.split}")


if __name__ == "__main__":
    main()
