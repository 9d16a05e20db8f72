"""`dass tag` under torchrun with two CPU processes (gloo): each process tags a disjoint share into its own shards,
process 0 writes the table, and the table equals a one-process run's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch.distributed as dist

from tests.test_tagging import SCORE_TOL, model_dir, tag_command, write_clips  # noqa: F401  (model_dir: fixture)
from transformers_dass.tagging import read_rows, tag
from transformers_dass.tagging.distributed import share

WORLD_SIZE = 2


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no torch.distributed gloo backend")
def test_two_processes_split_the_inputs_and_equal_one_process(model_dir, tmp_path):  # noqa: F811
    # 9 files: the shares are uneven (5 and 4); two lengths, one above the model's training length.
    files = write_clips(tmp_path / "archive", [(1.0, 16000, 1)] * 6 + [(2.0, 16000, 1)] * 3, seed=2)
    output = tmp_path / "tags.parquet"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD_SIZE)]
    command = tag_command([tmp_path / "archive"], output, model_dir, "--segments", "--shard-size", "2", "--num-workers", "0")
    command = launcher + ["-m"] + command[2:]  # torchrun ... -m transformers_dass tag ...
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("dass tag: 9 files") == 1  # process 0 reports, once

    parts = tmp_path / "tags.parquet.parts"
    ids = [str(p) for p in files]
    for rank in range(WORLD_SIZE):
        written = [row["id"] for shard in sorted(parts.glob(f"rank{rank:05d}-*.parquet")) for row in read_rows(shard)]
        assert written == [ids[i] for i in share(len(ids), rank, WORLD_SIZE)]  # its own share, in its own shards
    rows = read_rows(output)
    one_process = tag(files, model=str(model_dir), segments=True, num_workers=0, show_progress=False).rows
    assert [row["id"] for row in rows] == ids
    for mine, reference in zip(rows, one_process):
        assert mine["labels"] == reference["labels"] and mine["clip_pooling"] == reference["clip_pooling"]
        np.testing.assert_allclose(mine["scores"], reference["scores"], atol=SCORE_TOL, rtol=0)
        assert [(s["start_s"], s["end_s"], s["label"]) for s in mine["segments"]] == [
            (s["start_s"], s["end_s"], s["label"]) for s in reference["segments"]
        ]
