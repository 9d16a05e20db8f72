"""scripts/evaluate_sed.py: the bundled demo model scored on two hand-made clips, from a folder and from parquet."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from tests.test_train_script import load_script
from transformers_dass.evaluation import sed

try:
    sed.load_sed_scores_eval()
except ImportError as error:
    pytest.skip(str(error), allow_module_level=True)

RATE = 16000
# Clip a: a 1 kHz beep over [2, 3] s; clip b: a 600-1400 Hz sweep over [5, 7] s; both 10 s of faint noise.
TABLE = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\na\t2.0\t3.0\t/demo/beep\nb\t5.0\t7.0\t/demo/siren\n"


def clip(start: float, end: float, low: float, high: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    samples = 0.001 * rng.standard_normal(10 * RATE)
    t = np.arange(int((end - start) * RATE)) / RATE
    sweep = 0.5 * np.sin(2 * np.pi * (low + (high - low) * t / t[-1] / 2) * t)  # low to high Hz
    samples[int(start * RATE) : int(start * RATE) + t.size] += sweep
    return samples.astype(np.float32)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """The two clips as wav files + the strong table, and as the demo generator's parquet + eval_strong.tsv."""
    folder = tmp_path_factory.mktemp("sed_split")
    (folder / "audio").mkdir()
    rows = []
    for name, samples in (("a", clip(2.0, 3.0, 1000, 1000)), ("b", clip(5.0, 7.0, 600, 1400))):
        soundfile.write(str(folder / "audio" / f"{name}.wav"), samples, RATE, subtype="PCM_16")
        encoded = (folder / "audio" / f"{name}.wav").read_bytes()
        rows.append({"video_id": name, "audio": {"bytes": encoded, "path": name}})
    (folder / "strong.tsv").write_text(TABLE)
    (folder / "eval_strong.tsv").write_text(TABLE)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), folder / "eval-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="module")
def script():
    return load_script("evaluate_sed")


def test_scores_a_folder_of_clips(split, script, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--strong-tsv", str(split / "strong.tsv"), "--audio-dir", str(split / "audio"), "--output-dir", str(out)]
    assert script.main([*args, "--ceilings", "--clip-map", "--no-timing"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert all(0.0 <= value <= 1.0 for key, value in report["no_timing"].items() if key != "classes")
    assert (report["clips"], report["events"], report["metrics"]["classes"]) == (2, 2, 2)
    metrics = report["metrics"]
    assert set(metrics) == {"psds1", "psds2", "collar_f1", "collar_precision", "collar_recall", "collar_f1_micro",
                            "classes", "clip_map"}  # fmt: skip
    assert all(0.0 <= value <= 1.0 for key, value in metrics.items() if key != "classes")
    # Perfect labels on 40 ms steps: [2, 3] and [5, 7] fall on step edges -> detected exactly.
    assert report["ceilings"]["perfect labels on 40 ms"]["psds1"] == pytest.approx(1.0)
    assert report["ceilings"]["perfect labels on 40 ms"]["collar_f1"] == pytest.approx(1.0)
    assert sorted(path.name for path in (out / "scores").iterdir()) == ["a.tsv", "b.tsv"]
    assert "2 clips, 2 events, 2 classes" in capsys.readouterr().out
    # The same clips from the demo generator's layout (parquet + eval_strong.tsv) score the same.
    out2 = tmp_path / "out2"
    assert script.main(["--data", str(split), "--split", "eval", "--output-dir", str(out2), "--clip-map"]) == 0
    assert json.loads((out2 / "metrics.json").read_text())["metrics"] == pytest.approx(metrics)


def test_median_filter_and_argument_errors(split, script, tmp_path):
    out = tmp_path / "out"
    args = ["--strong-tsv", str(split / "strong.tsv"), "--audio-dir", str(split / "audio"), "--output-dir", str(out)]
    assert script.main([*args, "--median-filter", "0.96"]) == 0
    assert json.loads((out / "metrics.json").read_text())["median_filter_s"] == 0.96
    for bad in ([], ["--data", str(split), "--strong-tsv", "x"], ["--strong-tsv", "x"]):
        with pytest.raises(SystemExit):
            script.parse_args(bad)
    with pytest.raises(SystemExit, match="make_demo_dataset"):
        script.main(["--data", str(tmp_path), "--split", "eval"])
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text(TABLE.replace("/demo/beep", "/m/dog"))
    with pytest.raises(ValueError, match="not score columns"):
        script.main(["--strong-tsv", str(unknown), "--audio-dir", str(split / "audio"), "--output-dir", str(out)])



def test_the_no_timing_floor_repeats_each_clip_score_at_every_step(script):
    from transformers_dass.inference.timeline import Timeline

    times = np.array([[0.0, 0.04], [0.04, 0.08], [0.08, 0.1]])
    timeline = Timeline(times=times, scores=np.array([[0.9, 0.0], [0.1, 0.2], [0.0, 1.0]], np.float32), labels=["a", "b"])
    flat = script.no_timing({"clip": timeline}, {"clip": {"b": 0.75, "a": 0.25}})["clip"]
    np.testing.assert_array_equal(flat.scores, [[0.25, 0.75]] * 3)
    np.testing.assert_array_equal(flat.times, times)
    assert flat.labels == ["a", "b"]
