"""The `/classify` API of `dass demo` through gradio_client: the numbers of `dass classify` and the rows of
`dass timeline`, converted input, messages for bad input, concurrent calls on one model."""

from __future__ import annotations

import csv
import json
import sys
import threading

import numpy as np
import pytest
import soundfile

from transformers_dass.audio.io import load_audio
from transformers_dass.audio.resample import resample
from transformers_dass.cli import main as cli_main

from .webapp_server import EXAMPLES, SCENE, running_demo

LIMIT_MB = 2  # the test server's upload limit: above a 10 s 44.1 kHz stereo WAV (1.7 MiB), cheap to exceed
CALL_TIMEOUT = 120  # seconds: a 10 s clip takes well under one on any CPU; a hang fails instead of stalling CI


@pytest.fixture(scope="module")
def demo():
    with running_demo(max_file_mb=LIMIT_MB) as (url, app):
        yield url


@pytest.fixture(scope="module")
def client(demo):
    pytest.importorskip("gradio_client", reason='the web app tests need gradio_client: pip install -e ".[demo]"')
    from gradio_client import Client

    return Client(demo, verbose=False)


def classify(client, path, **kwargs):
    from gradio_client import handle_file

    return client.submit(handle_file(str(path)), api_name="/classify", **kwargs).result(timeout=CALL_TIMEOUT)


def cli_labels(path, capsys) -> dict[str, float]:
    capsys.readouterr()
    assert cli_main(["classify", str(path), "--json", "--dtype", "float32"]) == 0
    return {item["label"]: item["score"] for item in json.loads(capsys.readouterr().out)}


def cli_segments(path, tmp_path, capsys, *options) -> list[dict]:
    out = tmp_path / "segments.csv"
    assert cli_main(["timeline", str(path), "--csv", str(out), "--no-png", "--dtype", "float32", *options]) == 0
    capsys.readouterr()
    with open(out, newline="") as handle:
        return [
            {"start_s": float(r["start_s"]), "end_s": float(r["end_s"]), "label": r["label"], "score": float(r["score"])}
            for r in csv.DictReader(handle)
        ]


def test_dass_demo_without_gradio_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    with pytest.raises(SystemExit, match=r'dass demo: error: .*gradio.*pip install "transformers-dass\[demo\]"'):
        cli_main(["demo", "--port", "1"])


@pytest.mark.parametrize("name", ["scene_siren_three.wav", "seven_in_babble.wav"])
def test_classify_api_gives_the_numbers_of_dass_classify_and_timeline(client, name, tmp_path, capsys):
    path = EXAMPLES / name
    labels, found = classify(client, path)
    assert labels == cli_labels(path, capsys)  # exact: the same function on the same file
    assert list(labels.values()) == sorted(labels.values(), reverse=True) and len(labels) == 5
    assert found == cli_segments(path, tmp_path, capsys)
    if name == "scene_siren_three.wav":
        assert list(labels)[:2] == ["siren", "three"] or list(labels)[:2] == ["three", "siren"]
        assert {"siren", "three"} <= {segment["label"] for segment in found}


def test_classify_api_options_are_those_of_the_cli(client, tmp_path, capsys):
    labels, found = classify(client, SCENE, threshold=0.3, smoothing=3, top_k=2)
    assert len(labels) == 2
    assert found == cli_segments(SCENE, tmp_path, capsys, "--threshold", "0.3", "--smoothing", "3")


def test_stereo_44k_file_is_converted_not_refused(client, tmp_path, capsys):
    mono = load_audio(SCENE)
    stereo = resample(np.stack([mono, 0.5 * mono]), 16000, 44100).T
    path = tmp_path / "scene_44k_stereo.wav"
    soundfile.write(path, stereo, 44100, subtype="PCM_16")
    labels, found = classify(client, path)
    assert labels == cli_labels(path, capsys)
    assert set(list(labels)[:2]) == {"siren", "three"}


def write_bad_files(folder) -> dict[str, tuple]:
    """name -> (path, regex of the message the page must show)."""
    data = SCENE.read_bytes()
    files = {
        "not_audio.wav": (b"this is text, not audio\n" * 10, "not an audio file"),
        "empty.wav": (b"", "is empty"),
        "header_only.wav": (data[:44], "no audio samples"),
        "cut_in_header.wav": (data[:20], "not an audio file"),
    }
    flac = folder / "whole.flac"
    soundfile.write(flac, load_audio(SCENE), 16000)
    files["cut.flac"] = (flac.read_bytes()[: flac.stat().st_size // 2], "could not decode")
    out = {}
    for name, (content, message) in files.items():
        (folder / name).write_bytes(content)
        out[name] = (folder / name, message)
    tiny = folder / "too_short.wav"
    soundfile.write(tiny, np.zeros(100, dtype=np.float32), 16000)
    out["too_short.wav"] = (tiny, "400")
    return out


def test_bad_input_gets_a_message_not_a_crash(client, tmp_path):
    from gradio_client.exceptions import AppError

    for name, (path, message) in write_bad_files(tmp_path).items():
        with pytest.raises(AppError, match=message) as caught:
            classify(client, path)
        assert name in str(caught.value) or name == "too_short.wav", caught.value
        assert str(tmp_path) not in str(caught.value)  # the server's temporary path is not shown
    labels, _ = classify(client, SCENE)  # the server still serves
    assert "siren" in labels


def test_file_over_the_size_limit_is_refused_with_the_limit(client, tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, np.tile(load_audio(SCENE), 8), 16000, subtype="PCM_16")  # 80 s: 2.4 MiB
    assert path.stat().st_size > LIMIT_MB * 1024 * 1024
    with pytest.raises(Exception, match="(?i)size|large|MiB|exceed") as caught:
        classify(client, path)
    print("message for a file over the limit:", caught.value)


def test_size_limit_is_checked_by_the_app_too(tmp_path):
    from transformers_dass.webapp.analysis import check_audio_file

    path = tmp_path / "clip.wav"
    soundfile.write(path, load_audio(SCENE), 16000, subtype="PCM_16")
    assert check_audio_file(path, max_bytes=path.stat().st_size).startswith("16000 Hz, 1 channel, 10.00 s")
    with pytest.raises(ValueError, match=r"clip.wav is 0 MiB; this demo takes files up to 0 MiB"):
        check_audio_file(path, max_bytes=path.stat().st_size - 1)


def test_three_concurrent_calls_queue_on_one_model(client, monkeypatch):
    from gradio_client import handle_file

    from transformers_dass import DassForAudioClassification
    from transformers_dass.webapp.analysis import Tagger

    expected = classify(client, SCENE)
    active, most, lock = [0], [0], threading.Lock()
    analyse = Tagger.analyse

    def counted(self, *args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            return analyse(self, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    def no_reload(*args, **kwargs):
        raise AssertionError("a request loaded the model again")

    monkeypatch.setattr(Tagger, "analyse", counted)
    monkeypatch.setattr(DassForAudioClassification, "from_pretrained", no_reload)
    jobs = [client.submit(handle_file(str(SCENE)), api_name="/classify") for _ in range(3)]
    results = [job.result(timeout=3 * CALL_TIMEOUT) for job in jobs]
    assert all(result == expected for result in results)
    assert most[0] == 1  # queued: one request at a time on the one model
