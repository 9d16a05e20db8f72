"""`dass` on bad input: a mix of good and broken audio files, broken --model folders, truncated WAV files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transformers_dass.cli import main as cli_main
from transformers_dass.inference.loading import demo_model_path

from .conftest import require_fixture

TRUNCATED_BYTES = 20000  # of the 15.06 s babble fixture: a 44-byte header + 9978 16-bit samples = 0.62 s


@pytest.fixture
def audio_files(tmp_path) -> dict[str, Path]:
    """A readable WAV, random bytes named .wav, an empty .wav and a WAV cut after its first 20000 bytes."""
    good = tmp_path / "good.wav"
    shutil.copyfile(require_fixture("babble_all.wav"), good)
    corrupted = tmp_path / "corrupted.wav"
    corrupted.write_bytes(os.urandom(5000))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:TRUNCATED_BYTES])
    return {"good": good, "corrupted": corrupted, "empty": empty, "truncated": truncated}


DTYPE_LINE = "dass classify: dtype float32: requested\n"  # the one stderr line of a run without problems


def classify(capsys, *args: str) -> tuple[int, str, str]:
    """Run `dass classify ARGS --top-k 3 --dtype float32` in this process; (exit code, stdout, stderr)."""
    code = cli_main(["classify", *map(str, args), "--top-k", "3", "--dtype", "float32"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_module(*args, cwd=None, **env: str) -> subprocess.CompletedProcess:
    """`python -m transformers_dass ARGS` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "transformers_dass", *map(str, args)],
        capture_output=True, text=True, check=False, cwd=cwd, env={**os.environ, **env},
    )


def test_mixed_files_print_every_readable_result_and_one_error_per_bad_file(audio_files, capsys):
    files = [audio_files[k] for k in ("good", "corrupted", "empty", "truncated")]
    code, out, err = classify(capsys, *files)
    assert code == 2
    lines = out.splitlines()
    # The readout of `--clip-pooling auto` is the model's own: the bundled model's is max at every length (trained per
    # step, a short sound's mean over 10 s is far below its peak: its model card); the auto rule of a model whose
    # config says auto (mean up to the training length, max beyond) is tested in test_readout.
    assert [line for line in lines if not line.startswith("  ")] == [
        f"{audio_files['good']}  (clip readout: max)", f"{audio_files['truncated']}  (clip readout: max)"
    ]
    assert len(lines) == 2 * (1 + 3)
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 2
    assert str(audio_files["corrupted"]) in errors[0] and "could not decode" in errors[0]
    assert str(audio_files["empty"]) in errors[1] and "empty (0 bytes)" in errors[1]
    assert "2 of 4 files could not be classified" in err


def test_mixed_files_json_has_one_entry_per_input_in_order(audio_files, capsys):
    code, single, _ = classify(capsys, audio_files["good"], "--json")
    assert code == 0
    files = [audio_files[k] for k in ("corrupted", "good", "empty", "truncated", "good")]
    code, out, err = classify(capsys, *files, "--json")
    assert code == 2
    entries = json.loads(out)
    assert [entry["file"] for entry in entries] == [str(f) for f in files]
    assert [sorted(entry) for entry in entries] == [
        ["error", "file"], ["file", "predictions"], ["error", "file"], ["file", "predictions"], ["file", "predictions"]
    ]
    assert "could not decode" in entries[0]["error"] and "empty (0 bytes)" in entries[2]["error"]
    # the failures change nothing for the good file, given twice: its list is the one-file output
    assert entries[1]["predictions"] == entries[4]["predictions"] == json.loads(single)
    assert all(set(p) == {"label", "score", "clip_pooling"} for p in entries[3]["predictions"])
    assert err.count(": error: ") == 2


def test_one_bad_file_with_json_prints_no_json_and_exits_2(audio_files, capsys):
    # one file keeps the one-file shape: its predictions list, or nothing when it fails
    code, out, err = classify(capsys, audio_files["corrupted"], "--json")
    assert code == 2 and out == "" and err.count(": error: ") == 1 and str(audio_files["corrupted"]) in err


def test_all_files_good_exit_zero(audio_files, capsys):
    code, out, err = classify(capsys, audio_files["good"], audio_files["good"])
    assert code == 0 and out.count(str(audio_files["good"])) == 2 and err == DTYPE_LINE


def test_truncated_wav_is_classified_with_one_warning_that_says_how_much_was_read(audio_files, capsys):
    code, out, err = classify(capsys, audio_files["truncated"], "--json")
    assert code == 0 and len(json.loads(out)) == 3
    warnings = [line for line in err.splitlines() if "truncated" in line]
    assert warnings == [
        f"dass classify: warning: {audio_files['truncated']} is truncated: read 0.62 s of the 15.06 s its header "
        "declares; the rest of the recording is missing (copy or export the file again to use all of it)"
    ]


def test_timeline_warns_once_for_a_truncated_wav(audio_files, tmp_path, capsys):
    csv = tmp_path / "out.csv"
    assert cli_main(["timeline", str(audio_files["truncated"]), "--no-png", "--csv", str(csv)]) == 0
    err = capsys.readouterr().err
    assert err.count("is truncated: read 0.62 s of the 15.06 s") == 1
    assert csv.read_text().startswith("start_s,end_s,label,score")


def test_subprocess_mixed_files_no_traceback(audio_files):
    result = run_module("classify", audio_files["good"], audio_files["corrupted"], audio_files["truncated"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0] == f"{audio_files['good']}  (clip readout: max)"
    assert result.stderr.count("is truncated") == 1 and result.stderr.count(": error: ") == 1


def truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


# How each case damages a copy of the demo model folder (None: no folder at all), and what the error must say.
DAMAGES = {
    "empty": (lambda folder: [p.unlink() for p in folder.iterdir()], "has no config.json"),
    "nonexistent": (None, "does not exist"),
    "corrupt_config": (
        lambda folder: (folder / "config.json").write_text('{"model_type": "dass", "dims": [32, 64'),
        "config.json is not valid JSON",
    ),
    "not_dass_config": (
        lambda folder: (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768})),
        "config.json is not a DASS config (model_type 'bert'",
    ),
    "truncated_weights": (
        lambda folder: truncate(folder / "model.safetensors", 1000),
        "could not load the weights of model folder",
    ),
    "no_weights": (
        lambda folder: (folder / "model.safetensors").unlink(),
        "has config.json but no weights (model.safetensors)",
    ),
    "bad_config_value": (
        lambda folder: (folder / "config.json").write_text(json.dumps({"model_type": "dass", "dims": [32, 64]})),
        "could not load config.json of model folder",
    ),
    "corrupt_preprocessor": (
        lambda folder: truncate(folder / "preprocessor_config.json", 30),
        "could not load preprocessor_config.json of model folder",
    ),
}


def broken_model_folder(case: str, root: Path) -> tuple[Path, str]:
    """A copy of the demo model folder damaged as DAMAGES[case] says: (folder, what the error must say)."""
    damage, problem = DAMAGES[case]
    folder = root / case
    if damage is not None:
        shutil.copytree(demo_model_path(), folder)
        damage(folder)
    return folder, problem


@pytest.mark.parametrize("command", ["classify", "timeline"])
@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_broken_model_folder_gives_one_line_naming_it(case, command, audio_files, tmp_path, capsys):
    folder, problem = broken_model_folder(case, tmp_path)
    code = cli_main([command, str(audio_files["good"]), "--model", str(folder)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"dass {command}: error: ") and str(folder) in captured.err and problem in captured.err


def test_broken_model_folder_subprocess_no_traceback(audio_files, tmp_path):
    folder, problem = broken_model_folder("truncated_weights", tmp_path)
    result = run_module("classify", audio_files["good"], "--model", folder)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and str(folder) in result.stderr and problem in result.stderr


def test_unknown_name_is_neither_a_folder_nor_a_hub_model(audio_files, tmp_path):
    # A bare name may be a Hub id; offline, the Hub cannot have it either.
    result = run_module("classify", audio_files["good"], "--model", "no-such-model", cwd=tmp_path, HF_HUB_OFFLINE="1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no-such-model is neither a local model folder nor a model that could be loaded from the Hub" in result.stderr


def test_folder_without_preprocessor_config_uses_the_default_features(audio_files, capsys):
    # the Hub remote-code layout: config.json + model.safetensors only
    code, out, err = classify(capsys, audio_files["good"], "--model", require_fixture("hub_tiny"))
    assert code == 0 and out.startswith(str(audio_files["good"])) and err == DTYPE_LINE
