"""`dass listen`: a scene piped in as raw PCM reports each sound once, near its true start; other rates, channels
and formats; files, URLs and a (stand-in) microphone; bad input on stdin; a stream cut mid-sound; Ctrl-C; a reader
of the lines that goes away; falling behind a live source."""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import soundfile

from transformers_dass.audio.resample import resample
from transformers_dass.cli import main
from transformers_dass.live import runner
from transformers_dass.live.events import LiveEvent

from .conftest import hide_package
from .test_demo_model import EXAMPLES

SCENE = EXAMPLES / "scene_siren_three.wav"
RATE = 16000
# Where the example scene's sounds start (reports/demo/make_examples.py places them): the truth of these tests.
SCENE_STARTS = {"siren": 1.5, "three": 6.8}
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def scene(copies: int = 3) -> np.ndarray:
    samples, rate = soundfile.read(SCENE, dtype="float32")
    assert rate == RATE
    return np.tile(samples, copies)


def s16le(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()


def listen(args: list[str], stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transformers_dass", "listen", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=ENV)  # fmt: skip


def events_of(jsonl: str) -> list[dict]:
    return [json.loads(line) for line in jsonl.splitlines() if line.strip()]


def check_each_sound_once(events: list[dict], copies: int) -> None:
    """Every sound of the scene repeated `copies` times: one start within 1 s of its true start, then one end;
    nothing else starts."""
    starts = [e for e in events if e["kind"] == "start"]
    truth = sorted((10.0 * copy + start, label) for copy in range(copies) for label, start in SCENE_STARTS.items())
    assert [e["label"] for e in starts] == [label for _, label in truth], events
    for event, (start, _) in zip(starts, truth):
        assert abs(event["time_s"] - start) <= 1.0, (event, start)
    for label in SCENE_STARTS:  # start and end alternate for each label and every sound ends
        kinds = [e["kind"] for e in events if e["label"] == label]
        assert kinds == ["start", "end"] * copies, (label, kinds)
    assert all(set(e) == {"time_s", "kind", "label", "score"} and 0 <= e["score"] <= 1 for e in events)


def test_a_scene_piped_in_as_raw_pcm_reports_each_sound_once_near_its_start():
    result = listen(["-", "--jsonl", "--dtype", "float32"], stdin=s16le(scene(3)))
    assert result.returncode == 0, result.stderr.decode()
    check_each_sound_once(events_of(result.stdout.decode()), copies=3)
    err = result.stderr.decode()
    assert "30.00 s of audio from stdin; 30 windows" in err and "0 skipped" in err and "Traceback" not in err
    assert "latency not measured (the source delivered faster than real time)" in err


class Stdin:
    """A stand-in for sys.stdin whose `buffer` holds raw bytes."""

    def __init__(self, data: bytes):
        self.buffer = io.BufferedReader(io.BytesIO(data))


def run_main(monkeypatch, capsys, args: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", Stdin(stdin))
    code = main(["listen", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_other_rates_channels_and_formats_give_the_same_sounds(monkeypatch, capsys):
    samples = scene(2)
    stereo = np.stack([samples, 0.5 * samples], axis=1)
    at_44k = resample(stereo.T.copy(), RATE, 44100).T  # (samples, 2)
    code, out, err = run_main(monkeypatch, capsys, ["-", "--jsonl", "--dtype", "float32", "--rate", "44100",
                                                    "--channels", "2", "--format", "f32le"],
                              np.ascontiguousarray(at_44k, dtype="<f4").tobytes())  # fmt: skip
    assert code == 0, err
    check_each_sound_once(events_of(out), copies=2)


def test_a_file_a_url_and_stdin_give_the_same_events(monkeypatch, capsys, tmp_path):
    pytest.importorskip("av", reason="URLs are read through PyAV: the [media] extra")
    code, from_stdin, err = run_main(monkeypatch, capsys, ["-", "--jsonl", "--dtype", "float32"], s16le(scene(2)))
    assert code == 0, err
    path = tmp_path / "two_scenes.wav"
    soundfile.write(path, scene(2), RATE, subtype="PCM_16")
    code, from_file, err = run_main(monkeypatch, capsys, [str(path), "--jsonl", "--dtype", "float32", "--no-pace"])
    assert code == 0 and from_file == from_stdin, err

    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/two_scenes.wav"
        code, from_url, err = run_main(monkeypatch, capsys, [url, "--jsonl", "--dtype", "float32", "--no-pace"])
    finally:
        server.shutdown()
    assert code == 0 and from_url == from_stdin, err


@pytest.mark.parametrize(
    "data, args, message",
    [
        (b"", [], "no audio on stdin"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64), [], "stdin holds a WAV file, not raw samples"),
        (b"fLaC" + bytes(64), [], "stdin holds a FLAC file"),
        (np.array([0.1, np.nan], "<f4").tobytes() * 100, ["--format", "f32le"], "pass --format s16le"),
    ],
)
def test_bad_stdin_is_refused_with_the_fix(monkeypatch, capsys, data, args, message):
    code, out, err = run_main(monkeypatch, capsys, ["-", *args], data)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_odd_bytes_garbage_and_misread_formats_are_said_and_do_not_stop_the_stream(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, ["-", "--jsonl"], s16le(scene(1)) + b"\x01")
    assert code == 0 and "1 byte(s) that do not make a whole frame" in err
    assert {e["label"] for e in events_of(out)} >= {"siren", "three"}
    garbage = np.random.default_rng(0).integers(0, 256, 3 * RATE * 2, dtype=np.uint8).tobytes()
    code, out, err = run_main(monkeypatch, capsys, ["-", "--jsonl"], garbage)  # loud noise as s16le: it is heard
    assert code == 0 and "3.00 s of audio from stdin" in err
    # 16-bit samples read as f32le: pairs of them make floats far outside [-1, 1] (said, the stream goes on)
    loud_pairs = np.full(2 * RATE, 0x4600, "<u2").tobytes()  # each float 0x46004600 = 8208.0
    code, out, err = run_main(monkeypatch, capsys, ["-", "--format", "f32le"], loud_pairs)
    assert code == 0 and "far outside [-1, 1]: if stdin holds 16-bit integers, pass --format s16le" in err
    # ... or NaN bit patterns (refused: the NaN case above)
    code, out, err = run_main(monkeypatch, capsys, ["-", "--format", "f32le"], s16le(scene(1)))
    assert "pass --format s16le" in err and "Traceback" not in err


def test_a_stream_that_stops_mid_sound_closes_it(monkeypatch, capsys):
    cut = scene(1)[: int(2.6 * RATE)]  # in the middle of the siren (1.5-3.82 s)
    code, out, err = run_main(monkeypatch, capsys, ["-", "--jsonl", "--dtype", "float32"], s16le(cut))
    events = [e for e in events_of(out) if e["label"] == "siren"]
    assert code == 0 and [e["kind"] for e in events] == ["start", "end"], out
    assert events[1]["time_s"] <= 2.6 + 1e-6


def test_ctrl_c_closes_the_open_sounds_and_exits_cleanly():
    process = subprocess.Popen([sys.executable, "-m", "transformers_dass", "listen", str(SCENE), "--jsonl",
                                "--dtype", "float32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)  # fmt: skip
    try:
        first = process.stdout.readline()  # the siren's start, decided at about 2 s of real time
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=60)
    finally:
        process.kill()
    events = events_of((first + rest).decode())
    assert process.returncode == 0, err.decode()
    assert [(e["kind"], e["label"]) for e in events][:2] == [("start", "siren"), ("end", "siren")], events
    assert "Traceback" not in err.decode() and "s of audio from" in err.decode()


def test_a_reader_that_goes_away_ends_the_run_quietly():
    process = subprocess.Popen([sys.executable, "-m", "transformers_dass", "listen", "-", "--jsonl"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)  # fmt: skip
    threading.Thread(target=lambda: _feed(process.stdin, s16le(scene(6))), daemon=True).start()
    first = process.stdout.readline()
    process.stdout.close()  # as `dass listen - | head -1` does
    try:
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
    err = process.stderr.read().decode()
    assert json.loads(first)["kind"] == "start"
    assert "Traceback" not in err and "s of audio from stdin" in err, err


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except BrokenPipeError:
        pass


class FakeInputStream:
    """Plays a waveform into the callback at `rate` (as fast as it can), like PortAudio's input stream would."""

    waveform: np.ndarray = np.zeros(0, np.float32)
    devices: list = []
    overflow_blocks: frozenset = frozenset()  # blocks delivered with PortAudio's "input overflow" status

    def __init__(self, device, channels, samplerate, dtype, blocksize, callback):
        assert channels == 1 and dtype == "float32"
        FakeInputStream.devices.append(device)
        self.blocksize, self.callback, self.active = blocksize, callback, False

    def start(self):
        self.active = True

        def play():
            for index, first in enumerate(range(0, len(self.waveform), self.blocksize)):
                status = "input overflow" if index in self.overflow_blocks else None
                self.callback(self.waveform[first : first + self.blocksize, None], self.blocksize, None, status)
                time.sleep(0.001)
            self.active = False

        threading.Thread(target=play, daemon=True).start()

    def stop(self):
        self.active = False

    def close(self):
        pass


def stand_in_sounddevice(monkeypatch, queried: list | None = None) -> None:
    """A `sounddevice` module whose one input device (48 kHz) plays `FakeInputStream.waveform`."""
    fake = types.ModuleType("sounddevice")
    queried = [] if queried is None else queried
    fake.query_devices = lambda device, kind: queried.append((device, kind)) or {"default_samplerate": 48000.0,
                                                                                 "name": "stand-in"}  # fmt: skip
    fake.InputStream = FakeInputStream
    fake.PortAudioError = OSError
    monkeypatch.setitem(sys.modules, "sounddevice", fake)


def test_the_microphone_source_through_a_stand_in_for_sounddevice(monkeypatch, capsys):
    queried = []
    stand_in_sounddevice(monkeypatch, queried)
    FakeInputStream.waveform = resample(scene(1), RATE, 48000)
    FakeInputStream.devices = []
    code, out, err = run_main(monkeypatch, capsys, ["--jsonl", "--dtype", "float32", "--device", "USB mic"])
    assert code == 0, err
    assert queried == [("USB mic", "input")] and FakeInputStream.devices == ["USB mic"]
    starts = [e for e in events_of(out) if e["kind"] == "start"]
    assert {e["label"] for e in starts} == {"siren", "three"}, out
    assert "lost audio" not in err, err


def test_input_overflows_of_the_microphone_are_said(monkeypatch, capsys):
    stand_in_sounddevice(monkeypatch)
    FakeInputStream.waveform = resample(scene(1)[: 3 * RATE], RATE, 48000)
    monkeypatch.setattr(FakeInputStream, "overflow_blocks", frozenset({3, 7}))
    code, _, err = run_main(monkeypatch, capsys, ["--dtype", "float32"])
    assert code == 0, err
    assert "the microphone lost audio: PortAudio reported 2 input overflow(s)" in err, err


def test_the_microphone_drops_its_oldest_blocks_when_the_reader_does_not_take_them(monkeypatch):
    from transformers_dass.live.sources import MicrophoneBlocks

    stand_in_sounddevice(monkeypatch)
    microphone = MicrophoneBlocks(target_rate=RATE, capacity_s=0.5)  # 5 blocks of 0.1 s at 48 kHz
    blocks = [np.full((4800, 1), k, np.float32) for k in range(7)]
    for block in blocks:  # the device delivers 7 blocks before anything is read
        microphone._callback(block, 4800, None, None)
    assert microphone.dropped_s == pytest.approx(0.2)
    kept = [microphone._queue.get_nowait()[0, 0] for _ in range(microphone._queue.qsize())]
    assert kept == [2.0, 3.0, 4.0, 5.0, 6.0]  # the newest kept, in order
    assert "0.20 s were dropped before the reader took them" in microphone.losses()


def test_without_sounddevice_the_error_names_the_extra(monkeypatch, capsys):
    hide_package(monkeypatch, "sounddevice")
    code, out, err = run_main(monkeypatch, capsys, [])
    assert code == 2 and 'pip install "transformers-dass[live]"' in err


class SlowDetector:
    """Wraps a detector so that each window takes `seconds` (a model slower than the stream)."""

    def __init__(self, detector, seconds: float):
        self.detector, self.seconds = detector, seconds

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def push(self, samples, newest_only=False):
        before = self.detector.stats.windows
        events = self.detector.push(samples, newest_only)
        time.sleep(self.seconds * (self.detector.stats.windows - before))
        return events


def real_time_blocks(samples: np.ndarray, block_s: float = 0.1):
    block, began = int(block_s * RATE), time.monotonic()
    for first in range(0, len(samples), block):
        time.sleep(max(0.0, began + first / RATE - time.monotonic()))
        yield samples[first : first + block]


def test_falling_behind_a_live_source_is_said_once_and_windows_are_skipped():
    from transformers_dass.inference.loading import load_model
    from transformers_dass.live import LiveDetector

    loaded = load_model(None, "float32")
    detector = LiveDetector(loaded.model, loaded.extractor, window_s=2.0, hop_s=0.2)
    warnings = []
    report = runner.listen_to(SlowDetector(detector, 0.5), real_time_blocks(scene(1)[: 5 * RATE]), lambda e: None,
                              live=True, warn=warnings.append)  # fmt: skip
    assert report.window_latency_s and not report.interrupted
    assert len(warnings) == 1 and warnings[0].startswith("falling behind"), warnings
    assert detector.stats.skipped_windows > 0 and detector.stats.lost_s == 0.0
    assert detector.stats.audio_s == pytest.approx(5.0)


def test_a_slow_reader_of_the_lines_makes_a_live_source_drop_not_pile_up(monkeypatch):
    from transformers_dass.inference.loading import load_model
    from transformers_dass.live import LiveDetector

    monkeypatch.setattr(runner, "QUEUE_S", 1.0)  # 10 blocks of 0.1 s
    loaded = load_model(None, "float32")
    detector = LiveDetector(loaded.model, loaded.extractor)
    stalls = []

    def stuck_writer(event: LiveEvent) -> None:  # the first line takes 3 s to go out
        if not stalls:
            stalls.append(event)
            time.sleep(3.0)

    report = runner.listen_to(detector, real_time_blocks(scene(1)[: 8 * RATE]), stuck_writer, live=True,
                              warn=lambda message: None)  # fmt: skip
    assert stalls and report.dropped_s > 0.5
    assert detector.stats.audio_s + report.dropped_s == pytest.approx(8.0, abs=0.11)


def test_a_missing_or_undecodable_file_is_one_error_line(monkeypatch, capsys, tmp_path):
    code, out, err = run_main(monkeypatch, capsys, [str(tmp_path / "nowhere.wav")])
    assert code == 2 and "audio file not found" in err and "dtype" not in err  # refused before the model loads
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    code, out, err = run_main(monkeypatch, capsys, [str(broken), "--no-pace"])
    assert code == 2 and "could not decode" in err and "Traceback" not in err, err


ASOUNDRC = """pcm.!default {{
    type plug
    slave {{ pcm "scene"; format S16_LE; rate 16000; channels 1 }}
}}
pcm.scene {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}
"""


def test_a_real_portaudio_input_device(tmp_path):
    """The microphone path through the real sounddevice and PortAudio, on an ALSA device that plays the example scene
    (ALSA's `file` plugin over its `null` device). That device is not clocked: it delivers as fast as it is read, so
    this checks the binding (stream settings, callback, the queue that drops rather than grows), not the events."""
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as error:
        pytest.skip(f"needs sounddevice and PortAudio (apt-get install libportaudio2): {error}")
    raw = tmp_path / "scene.raw"
    raw.write_bytes(s16le(scene(1)))
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(raw=raw))
    env = {**ENV, "HOME": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import sounddevice as sd; print(sd.query_devices(None, 'input'))"],
                           capture_output=True, env=env, timeout=60)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"PortAudio finds no ALSA input device here: {probe.stderr.decode()[-200:]}")
    process = subprocess.Popen([sys.executable, "-m", "transformers_dass", "listen", "--jsonl", "--dtype", "float32"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        for line in process.stderr:  # the model is loaded and the device open
            if b"Ctrl-C to stop" in line:
                break
        time.sleep(3.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    err = err.decode()
    assert process.returncode == 0 and "Traceback" not in err, err
    heard = float(err.split(" s of audio from the microphone")[0].rsplit("\n", 1)[-1].split()[-1])
    assert heard > 1.0, err
    assert all(set(json.loads(line)) == {"time_s", "kind", "label", "score"} for line in out.decode().splitlines())


def test_no_input_device_is_one_error_line_naming_the_ways_out(tmp_path):
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as error:
        pytest.skip(f"needs sounddevice and PortAudio (apt-get install libportaudio2): {error}")
    env = {**ENV, "HOME": str(tmp_path)}  # no ~/.asoundrc: a machine without a sound card has no input device
    probe = subprocess.run([sys.executable, "-c", "import sounddevice as sd; sd.query_devices(None, 'input')"],
                           capture_output=True, env=env, timeout=60)  # fmt: skip
    if probe.returncode == 0:
        pytest.skip("this machine has an input device")
    for args, device in (([], "the default input device"), (["--device", "no such mic"], "input device 'no such mic'")):
        result = subprocess.run([sys.executable, "-m", "transformers_dass", "listen", *args], capture_output=True,
                                env=env, timeout=120)  # fmt: skip
        err = result.stderr.decode()
        assert result.returncode == 2 and f"error: cannot open {device}" in err and "--device" in err, err
        assert "Traceback" not in err
