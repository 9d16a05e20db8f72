"""A two-process DDP run of scripts/train_dass.py on CPU (gloo), launched with torchrun as docs/training.md says.

What each rank did is observed through a `sitecustomize` put on the children's PYTHONPATH (the script runs
unmodified): it records the clip ids every rank's collator receives and the types of the student and teacher
that `compute_loss` is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist
from safetensors.torch import load_file
from transformers import AutoModelForAudioClassification

from tests.test_train_script import SCRIPTS, common_args, setup  # noqa: F401  (setup is a fixture)
from transformers_dass import DassForAudioClassification
from transformers_dass.training.data import load_audio_dataset, split_for_node

WORLD_SIZE = 2

PROBE = textwrap.dedent(
    """
    import json, os

    if os.environ.get("DASS_DDP_PROBE_DIR") and "LOCAL_RANK" in os.environ:  # the torchrun workers only
        from transformers_dass.training.data.collator import DassAudioCollator
        from transformers_dass.training.distillation import DassDistillationTrainer

        def _append(name, record):
            path = os.path.join(os.environ["DASS_DDP_PROBE_DIR"], f"{name}-rank{os.environ['RANK']}.jsonl")
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\\n")

        _call = DassAudioCollator.__call__

        def _recording_call(self, rows):
            _append("ids", [row.get("video_id") for row in rows])
            return _call(self, rows)

        DassAudioCollator.__call__ = _recording_call
        _compute_loss = DassDistillationTrainer.compute_loss

        def _recording_compute_loss(self, model, inputs, *args, **kwargs):
            if model.training:
                _append("models", {"model": type(model).__name__, "teacher": type(self.teacher_model).__name__})
            return _compute_loss(self, model, inputs, *args, **kwargs)

        DassDistillationTrainer.compute_loss = _recording_compute_loss
    """
)


def expected_rank_ids(root: Path) -> list[set[str]]:
    """The clip ids `split_dataset_by_node` gives each rank of the script's shuffled stream (first epoch)."""
    stream = load_audio_dataset(data_files=str(root / "data" / "train-*.parquet"), streaming=True)
    stream = stream.shuffle(seed=0, buffer_size=8, max_buffer_input_shards=1)  # as the script, from common_args
    return [
        {row["video_id"] for row in split_for_node(stream, rank=r, world_size=WORLD_SIZE)} for r in range(WORLD_SIZE)
    ]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this torch build")
@pytest.mark.skipif(
    dist.is_available() and not dist.is_gloo_available(), reason="the gloo backend (CPU DDP) is not available"
)
def test_two_process_cpu_ddp_run_splits_the_stream_and_keeps_the_teacher_outside_ddp(setup, tmp_path):  # noqa: F811
    output_dir, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    # 2 shards of 8 clips, one per rank; 4 steps of 2 clips per rank = exactly one pass over each rank's shard.
    args = common_args(setup, output_dir, steps=4)
    args[args.index("--per_device_train_batch_size") + 1] = "2"
    args += ["--teacher_model_name_or_path", str(setup / "teacher"), "--ddp_backend", "gloo"]
    args += ["--distillation_loss", "kldiv", "--save_strategy", "no"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "DASS_DDP_PROBE_DIR": str(probe),
        "PYTHONPATH": os.pathsep.join([str(probe), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD_SIZE), "--standalone"]
    result = subprocess.run(
        command + [str(SCRIPTS / "train_dass.py"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"

    # Rank 0 saved a student that loads, and only the student: no teacher weights in it.
    model = AutoModelForAudioClassification.from_pretrained(output_dir)
    assert isinstance(model, DassForAudioClassification)
    saved = load_file(str(output_dir / "model.safetensors"))
    assert set(saved) == set(model.state_dict()) and not any("teacher" in k or "audio_spectrogram" in k for k in saved)

    # Both loss parts were logged (averaged over the ranks) at every step.
    state = json.loads((output_dir / "trainer_state.json").read_text())
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 4 and len(train_logs) == 4
    assert all({"label_loss", "distillation_loss"} <= set(entry) for entry in train_logs), train_logs

    # Every rank trained a DDP-wrapped student beside a bare (unwrapped) teacher.
    for rank in range(WORLD_SIZE):
        seen = {json.dumps(r) for r in map(json.loads, (probe / f"models-rank{rank}.jsonl").read_text().splitlines())}
        assert seen == {json.dumps({"model": "DistributedDataParallel", "teacher": "ASTForAudioClassification"})}

    # The ranks read disjoint halves of the data: the parts split_dataset_by_node gives them, each clip once.
    read = []
    for rank in range(WORLD_SIZE):
        batches = [json.loads(line) for line in (probe / f"ids-rank{rank}.jsonl").read_text().splitlines()]
        assert len(batches) == 4 and all(len(b) == 2 for b in batches)
        read.append([clip for batch in batches for clip in batch])
    expected = expected_rank_ids(setup)
    assert [sorted(ids) for ids in read] == [sorted(ids) for ids in expected]
    assert not set(read[0]) & set(read[1]) and len(set(read[0]) | set(read[1])) == 16
