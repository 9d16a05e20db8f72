#!/usr/bin/env python
"""Synthesise the offline demo dataset: spoken digits and sound events, in the AudioSet parquet schema.

Everything is made on this machine with two Debian tools, `espeak-ng` (speech) and `sox` (tones, noise,
resampling), so the whole distill-and-evaluate story can run without a network:

    apt-get install espeak-ng sox
    python scripts/make_demo_dataset.py --output-dir data/demo --seed 0

Classes (16): the spoken digits `zero` ... `nine` and six synthetic events `siren`, `beep`, `knock`, `chord`,
`whistle`, `engine`. Each split holds

- single-label clips (1-3 s): one digit or one event, over a background (babble, white/pink/brown noise, or
  near-silence) at a random SNR;
- multi-label scenes (10 s): one to four digits/events at random offsets over a background, labelled with the
  set of classes in them.

Generalisation is built into the splits: the test split's digits are spoken by espeak-ng voice variants that
the train and validation splits never use, at speaking rates from bands the training rates skip, and its
babble comes from held-out variants too. The `eval` split (`--splits eval`) holds sound event detection test
scenes: the test split's voices, 1-3 events each, over real babble (`--eval-babble WAV`, e.g. the 15 s
`../shared/fixtures/babble_all.wav`) or near-silence.

Every event also has its active span, strong labels in AudioSet-strong's convention: from the first to the last
sample within `ACTIVE_DB` dB of the event's peak (leading and trailing silence left out; the gaps between the
knocks or beeps of one event are inside it, as one annotation covers a run of knocks). Written files:

    {output_dir}/{split}-00000-of-0000N.parquet   video_id, audio (16 kHz FLAC bytes), labels (mids), human_labels,
                                                 events (strong labels: [{onset, offset, label (mid)}], seconds)
    {output_dir}/{split}.jsonl                   one line per clip: what is in it (voices, rates, SNRs, where each
                                                 sound was placed: offset_s, and its active span: start_s, end_s)
    {output_dir}/{split}_strong.tsv              the strong labels as AudioSet-strong's table: segment_id,
                                                 start_time_seconds, end_time_seconds, label (mid)
    {output_dir}/labels.csv                      index,mid,display_name
    {output_dir}/noise/babble_{split}.wav        60 s of babble per split (NIAH haystack noise)
    {output_dir}/manifest.json                   the arguments, voices per split and counts

The same seed gives the same dataset (espeak-ng and `sox -R` are deterministic; every random choice comes from
one numpy generator per clip).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import shutil
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

RATE = 16000
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
EVENTS = ["siren", "beep", "knock", "chord", "whistle", "engine"]
CLASSES = DIGITS + EVENTS
BACKGROUNDS = ["babble", "white", "pink", "brown", "quiet"]
SCENE_SECONDS = 10.0
# An event is active from its first to its last sample within this many dB of its peak.
ACTIVE_DB = 40.0

# espeak-ng English voices (accents) and voice variants (speaker identities, `voice+variant`). The test split
# speaks only with the held-out variants; the train/validation variants never reach it.
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
TRAIN_VARIANTS = [
    "m1", "m2", "m3", "m5", "m6", "f1", "f2", "f4", "klatt", "klatt3", "klatt4", "adam", "Alex", "Alicia", "Andy",
    "Annie", "antonio", "belinda", "benjamin", "boris", "caleb", "david", "Denis", "ed", "edward", "Gene",
    "grandma", "Henrique", "Hugo", "iven", "iven3", "john", "Lee", "linda", "Marco", "max", "Mario", "michel",
    "Mike", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph", "steph3", "travis", "victor",
    "zac", "shelby",
]  # fmt: skip
TEST_VARIANTS = [
    "m4", "m7", "f3", "f5", "klatt2", "klatt5", "Andrea", "anika", "aunty", "Diogo", "edward2", "Gene2",
    "grandpa", "iven2", "Jacky", "marcelo", "miguel", "sandro", "steph2", "Tweaky",
]  # fmt: skip
# Speaking rates in words per minute: the test split draws from the bands between the training bands.
TRAIN_RATES = [(95, 125), (145, 185), (215, 260)]
TEST_RATES = [(80, 95), (125, 145), (185, 215), (260, 280)]
# Words for babble: no digits and no homophones of digits (won, to, too, for, ate, ...).
BABBLE_WORDS = """
the a and of in is it you that he was on are as with his they at be this have from or had by word but not
what all were we when your can said there use an each which she do how their if will up other about out many
then them these so some her would make like him into time has look more write go see number no way could
people my than first water been call who oil its now find long down day did get come made may part over new
sound take only little work know place year live me back give most very after thing our just name good
sentence man think say great where help through much before line right mean old any same tell boy follow came
want show also around form three small set put end does another well large must big even such because turn
here why ask went men read need land different home us move try kind hand picture again change off play spell
air away animal house point page letter mother answer found study still learn should america world
""".split()
BABBLE_WORDS = [w for w in BABBLE_WORDS if w not in {"three"}]


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"{' and '.join(missing)} not found: install them (Debian/Ubuntu: `apt-get install espeak-ng sox`)."
        )


def run_to_samples(command: list[str], stdin: bytes | None = None) -> np.ndarray:
    """Run a command that writes raw float32 mono samples at 16 kHz to stdout; (samples,) float32."""
    result = subprocess.run(command, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


SOX_RAW_OUT = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(RATE), "-"]


def speak(text: str, voice: str, rate_wpm: int, pitch: int, gap: int = 0) -> np.ndarray:
    """espeak-ng speech resampled to 16 kHz by sox, leading/trailing silence kept short; (samples,)."""
    speech = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-g", str(gap), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    samples = run_to_samples(["sox", "-t", "wav", "-", *SOX_RAW_OUT], stdin=speech)
    if not samples.size or not np.any(samples):
        raise RuntimeError(f"espeak-ng produced no sound for {text!r} with voice {voice}")
    return trim_silence(samples)


def trim_silence(samples: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return samples[max(loud[0] - 160, 0) : loud[-1] + 160] if loud.size else samples


def active_span(sound: np.ndarray, below_peak_db: float = ACTIVE_DB) -> tuple[int, int]:
    """[first, last + 1) samples of `sound` (samples,) within `below_peak_db` dB of its peak: where it is active."""
    loud = np.flatnonzero(np.abs(sound) >= np.abs(sound).max() * 10 ** (-below_peak_db / 20))
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, sound.size)


def event_entry(info: dict, sound: np.ndarray, offset: int, clip_samples: int, **extra) -> dict:
    """The jsonl entry of a sound placed at sample `offset`: its info, `offset_s` (where the sound starts) and its
    active span in the clip, `start_s` and `end_s` (seconds)."""
    first, stop = active_span(sound)
    start, end = offset + first, min(offset + stop, clip_samples)
    return {**info, "offset_s": offset / RATE, **extra, "start_s": start / RATE, "end_s": end / RATE}


def sox_synth(seconds: float, *synth: str, effects: tuple[str, ...] = ()) -> np.ndarray:
    """`sox -n ... synth seconds SYNTH... EFFECTS...` as (samples,) float32; `-R` makes its noise repeatable."""
    return run_to_samples(["sox", "-R", "-n", *SOX_RAW_OUT, "synth", f"{seconds:.4f}", *synth, *effects])


def fade(samples: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    n = min(int(seconds * RATE), samples.size // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        samples = samples.copy()
        samples[:n] *= ramp
        samples[-n:] *= ramp[::-1]
    return samples


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------------------


def make_siren(rng: np.random.Generator) -> np.ndarray:
    """Wailing sine sweeps up and down between two pitches."""
    low, high = rng.uniform(450, 800), rng.uniform(1000, 1700)
    half = rng.uniform(0.2, 0.6)
    cycles = int(rng.integers(2, 5))
    parts = []
    for _ in range(cycles):
        parts.append(sox_synth(half, "sine", f"{low:.0f}-{high:.0f}"))
        parts.append(sox_synth(half, "sine", f"{high:.0f}-{low:.0f}"))
    return fade(np.concatenate(parts))


def make_beep(rng: np.random.Generator) -> np.ndarray:
    """Two to five short tone beeps."""
    tone, shape = rng.uniform(700, 2800), str(rng.choice(["sine", "square"]))
    parts = []
    for _ in range(int(rng.integers(2, 6))):
        parts.append(fade(sox_synth(rng.uniform(0.07, 0.25), shape, f"{tone:.0f}"), 0.005))
        parts.append(silence(rng.uniform(0.08, 0.3)))
    return np.concatenate(parts[:-1])


def make_knock(rng: np.random.Generator) -> np.ndarray:
    """Two to five low, fast-decaying noise thumps."""
    cutoff = rng.uniform(250, 900)
    parts = []
    for _ in range(int(rng.integers(2, 6))):
        length = rng.uniform(0.04, 0.09)
        thump = sox_synth(length, "brownnoise", effects=("lowpass", f"{cutoff:.0f}", "fade", "q", "0.002", f"{length:.4f}", f"{length * 0.9:.4f}"))
        parts.append(thump)
        parts.append(silence(rng.uniform(0.12, 0.35)))
    return np.concatenate(parts[:-1])


def make_chord(rng: np.random.Generator) -> np.ndarray:
    """A plucked major or minor triad, optionally with the octave."""
    root = rng.uniform(110, 440)
    third = 4 if rng.random() < 0.5 else 3
    semitones = [0, third, 7] + ([12] if rng.random() < 0.5 else [])
    seconds = rng.uniform(1.0, 2.5)
    notes = [sox_synth(seconds, "pluck", f"{root * 2 ** (s / 12):.2f}") for s in semitones]
    return fade(np.sum(notes, axis=0) / len(notes))


def make_whistle(rng: np.random.Generator) -> np.ndarray:
    """A high sine glide with vibrato."""
    start, end = rng.uniform(1500, 3500), rng.uniform(1500, 3500)
    seconds = rng.uniform(0.6, 2.0)
    tone = sox_synth(seconds, "sine", f"{start:.0f}:{end:.0f}", effects=("tremolo", f"{rng.uniform(4, 9):.1f}", "40"))
    return fade(tone, 0.03)


def make_engine(rng: np.random.Generator) -> np.ndarray:
    """A low sawtooth hum with rumble, amplitude-modulated like a running motor."""
    seconds = rng.uniform(1.5, 3.0)
    base = rng.uniform(35, 95)
    hum = sox_synth(seconds, "sawtooth", f"{base:.1f}", effects=("lowpass", "1200", "tremolo", f"{rng.uniform(6, 20):.1f}", "60"))
    rumble = sox_synth(seconds, "brownnoise", effects=("lowpass", "400"))
    return fade(0.7 * hum + 0.3 * rumble, 0.1)


EVENT_MAKERS = {
    "siren": make_siren,
    "beep": make_beep,
    "knock": make_knock,
    "chord": make_chord,
    "whistle": make_whistle,
    "engine": make_engine,
}


# ---------------------------------------------------------------------------------------------------------------
# speech, backgrounds, mixing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SplitVoices:
    variants: list[str]
    rates: list[tuple[int, int]]


def random_voice(rng: np.random.Generator, voices: SplitVoices) -> tuple[str, int, int]:
    """(espeak voice `accent+variant`, rate in wpm, pitch 0-99)."""
    voice = f"{rng.choice(ACCENTS)}+{rng.choice(voices.variants)}"
    low, high = voices.rates[int(rng.integers(len(voices.rates)))]
    return voice, int(rng.integers(low, high)), int(rng.integers(15, 85))


def make_digit(rng: np.random.Generator, name: str, voices: SplitVoices) -> tuple[np.ndarray, dict]:
    voice, rate_wpm, pitch = random_voice(rng, voices)
    return speak(name, voice, rate_wpm, pitch), {"voice": voice, "rate_wpm": rate_wpm, "pitch": pitch}


def make_babble(rng: np.random.Generator, seconds: float, voices: SplitVoices, talkers: int | None = None) -> np.ndarray:
    """Several espeak-ng talkers reading random non-digit words at once, each at a random level and offset."""
    total = int(seconds * RATE)
    mix = np.zeros(total, dtype=np.float32)
    for _ in range(talkers or int(rng.integers(5, 9))):
        stream = []
        length = 0
        while length < total:
            words = " ".join(rng.choice(BABBLE_WORDS, size=int(rng.integers(6, 14))))
            voice, rate_wpm, pitch = random_voice(rng, voices)
            part = speak(words, voice, rate_wpm, pitch)
            stream.append(part / (rms(part) + 1e-8))
            length += part.size
        speech = np.concatenate(stream)
        offset = int(rng.integers(0, max(speech.size - total, 1)))
        mix += speech[offset : offset + total] * np.float32(10 ** (rng.uniform(-6, 0) / 20))
    return mix


def make_background(rng: np.random.Generator, kind: str, seconds: float, babble_pool: list[np.ndarray]) -> np.ndarray:
    samples = int(seconds * RATE)
    if kind == "babble":
        source = babble_pool[int(rng.integers(len(babble_pool)))]
        start = int(rng.integers(0, source.size - samples + 1))
        return source[start : start + samples].copy()
    if kind == "quiet":
        return sox_synth(seconds, "whitenoise")[:samples] * np.float32(0.001)
    return sox_synth(seconds, f"{kind}noise")[:samples]


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def place(mix: np.ndarray, sound: np.ndarray, offset: int) -> None:
    end = min(offset + sound.size, mix.size)
    mix[offset:end] += sound[: end - offset]


def scale_to_snr(background: np.ndarray, signal_rms: float, snr_db: float) -> np.ndarray:
    """`background` with mean removed, scaled so that 20 log10(signal_rms / its RMS) = snr_db."""
    background = background - background.mean()
    return background * np.float32(signal_rms / (rms(background) + 1e-12) / 10 ** (snr_db / 20))


def finish(mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random overall level (peak between -20 and -1 dBFS)."""
    peak = float(np.max(np.abs(mix))) or 1.0
    return (mix * np.float32(10 ** (rng.uniform(-20, -1) / 20) / peak)).astype(np.float32)


def make_sound(rng: np.random.Generator, name: str, voices: SplitVoices) -> tuple[np.ndarray, dict]:
    if name in DIGITS:
        sound, info = make_digit(rng, name, voices)
    else:
        sound, info = EVENT_MAKERS[name](rng), {}
    sound = sound / np.float32(rms(sound) + 1e-8)
    return sound.astype(np.float32), {"label": name, **info}


def make_single(rng: np.random.Generator, name: str, voices: SplitVoices, babble_pool) -> tuple[np.ndarray, dict]:
    """One sound at a random offset in a 1-3 s background at an SNR of -5 to 30 dB (or in near-silence)."""
    sound, info = make_sound(rng, name, voices)
    seconds = max(rng.uniform(1.0, 3.0), sound.size / RATE + 0.1)
    kind = str(rng.choice(BACKGROUNDS, p=[0.35, 0.15, 0.15, 0.1, 0.25]))
    snr_db = float(rng.uniform(-5, 30))
    mix = make_background(rng, kind, seconds, babble_pool)
    mix = scale_to_snr(mix, 1.0, snr_db) if kind != "quiet" else mix
    offset = int(rng.integers(0, mix.size - sound.size + 1))
    place(mix, sound, offset)
    events = [event_entry(info, sound, offset, mix.size)]
    return finish(mix, rng), {"kind": "single", "background": kind, "snr_db": snr_db, "events": events}


@dataclass(frozen=True)
class SceneStyle:
    """What a scene is made of: background kinds and their probabilities, and at most how many events."""

    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
    weights: tuple[float, ...] = (0.35, 0.15, 0.15, 0.1, 0.25)
    max_events: int = 4


# The scenes of train / validation / test, and the sound event detection test scenes of the `eval` split.
SCENES = SceneStyle()
EVAL_SCENES = SceneStyle(backgrounds=("babble", "quiet"), weights=(0.5, 0.5), max_events=3)


def make_scene(
    rng: np.random.Generator, voices: SplitVoices, babble_pool, style: SceneStyle = SCENES
) -> tuple[np.ndarray, dict]:
    """A 10 s background with one to `style.max_events` digits/events at random offsets, each at an SNR of 0 to
    25 dB (40 dB over near-silence)."""
    kind = str(rng.choice(style.backgrounds, p=style.weights))
    mix = make_background(rng, kind, SCENE_SECONDS, babble_pool)
    mix = mix / np.float32(rms(mix) + 1e-8) if kind != "quiet" else mix
    events = []
    for name in rng.choice(CLASSES, size=int(rng.integers(1, style.max_events + 1)), replace=False):
        sound, info = make_sound(rng, str(name), voices)
        snr_db = float(rng.uniform(0, 25)) if kind != "quiet" else 40.0
        sound = sound * np.float32(max(rms(mix), 1e-3) * 10 ** (snr_db / 20))
        offset = int(rng.integers(0, mix.size - sound.size + 1))
        place(mix, sound, offset)
        events.append(event_entry(info, sound, offset, mix.size, snr_db=snr_db))
    return finish(mix, rng), {"kind": "scene", "background": kind, "events": events}


# ---------------------------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------------------------

SPLIT_SEEDS = {"train": 1, "validation": 2, "test": 3, "eval": 4}
# The classes of the single-label clips, in turn: each digit twice per cycle, each event once.
SINGLE_CYCLE = DIGITS + EVENTS + DIGITS


def split_voices(split: str) -> SplitVoices:
    if split in ("test", "eval"):
        return SplitVoices(TEST_VARIANTS, TEST_RATES)
    return SplitVoices(TRAIN_VARIANTS, TRAIN_RATES)


def flac_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def mid(name: str) -> str:
    return f"/demo/{name}"


def make_clip(job) -> tuple[np.ndarray, dict]:
    """Clip `index` of a split: single-label clips first (classes in turn, digits twice as often), then scenes."""
    index, clip_seed, singles, voices, babble_pool, style = job
    rng = np.random.default_rng(clip_seed)
    if index < singles:
        name = SINGLE_CYCLE[index % len(SINGLE_CYCLE)]
        return make_single(rng, name, voices, babble_pool)
    return make_scene(rng, voices, babble_pool, style)


def read_babble(path: str | Path) -> np.ndarray:
    """A recording of babble as mono 16 kHz float32 (any format soundfile reads, any rate), at least a scene long."""
    from transformers_dass.audio.io import load_audio

    babble = load_audio(path, sampling_rate=RATE)
    if babble.size < SCENE_SECONDS * RATE:
        raise SystemExit(f"--eval-babble {path}: {babble.size / RATE:.1f} s, shorter than a {SCENE_SECONDS:.0f} s scene")
    return babble


def build_split(
    split: str, singles: int, scenes: int, seed: int, output_dir: Path, shards: int, workers: int = 1,
    babble_tracks: int = 6, babble_seconds: float = 30.0, babble_file: str | None = None,
) -> dict:
    import datasets

    voices = split_voices(split)
    base = np.random.SeedSequence([seed, SPLIT_SEEDS[split]])
    pool_seed, *clip_seeds = base.spawn(1 + singles + scenes)
    pool_rng = np.random.default_rng(pool_seed)
    if babble_file is not None:  # real babble (the eval split): excerpts of one recording
        babble_pool = [read_babble(babble_file)]
    else:
        babble_pool = [make_babble(pool_rng, babble_seconds, voices) for _ in range(babble_tracks)]
    style = EVAL_SCENES if split == "eval" else SCENES
    noise_dir = output_dir / "noise"
    noise_dir.mkdir(parents=True, exist_ok=True)
    babble = np.concatenate(babble_pool[:2])
    # 16-bit PCM: a float WAV carries a time-stamped PEAK chunk, and the same seed must give the same bytes.
    soundfile.write(noise_dir / f"babble_{split}.wav", 0.5 * babble / np.abs(babble).max(), RATE, subtype="PCM_16")

    rows, metadata = [], []
    jobs = [(index, clip_seed, singles, voices, babble_pool, style) for index, clip_seed in enumerate(clip_seeds)]
    with multiprocessing.get_context("fork").Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(make_clip, jobs, chunksize=8) if workers > 1 else map(make_clip, jobs)
        for index, (samples, info) in enumerate(results):
            labels = sorted({event["label"] for event in info["events"]}, key=CLASSES.index)
            clip_id = f"{split}-{index:05d}"
            rows.append(
                {
                    "video_id": clip_id,
                    "audio": {"bytes": flac_bytes(samples), "path": f"{clip_id}.flac"},
                    "labels": [mid(name) for name in labels],
                    "human_labels": labels,
                    "events": strong_labels(info["events"]),
                }
            )
            metadata.append({"video_id": clip_id, "labels": labels, "seconds": samples.size / RATE, **info})
            if (index + 1) % 200 == 0:
                print(f"  {split}: {index + 1}/{len(clip_seeds)} clips", file=sys.stderr, flush=True)

    features = datasets.Features(
        {
            "video_id": datasets.Value("string"),
            "audio": datasets.Audio(),
            "labels": datasets.List(datasets.Value("string")),
            "human_labels": datasets.List(datasets.Value("string")),
            "events": datasets.List(
                {
                    "onset": datasets.Value("float64"),
                    "offset": datasets.Value("float64"),
                    "label": datasets.Value("string"),
                }
            ),
        }
    )
    storage = features.copy()
    storage["audio"] = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    for shard in range(shards):
        part = rows[shard::shards]
        table = datasets.Dataset.from_list(part, features=datasets.Features(storage)).cast_column("audio", datasets.Audio())
        table.to_parquet(str(output_dir / f"{split}-{shard:05d}-of-{shards:05d}.parquet"))
    with open(output_dir / f"{split}.jsonl", "w") as handle:
        for line in metadata:
            handle.write(json.dumps(line) + "\n")
    write_strong_tsv(output_dir / f"{split}_strong.tsv", [(row["video_id"], row["events"]) for row in rows])
    counts = {name: sum(name in m["labels"] for m in metadata) for name in CLASSES}
    return {"clips": len(rows), "singles": singles, "scenes": scenes, "variants": voices.variants, "rates_wpm": voices.rates, "label_counts": counts}


def strong_labels(events: list[dict]) -> list[dict]:
    """A clip's strong labels: `{"onset", "offset", "label"}` (seconds, mid) per event, by onset."""
    spans = sorted((event["start_s"], event["end_s"], mid(event["label"])) for event in events)
    return [{"onset": onset, "offset": offset, "label": label} for onset, offset, label in spans]


def write_strong_tsv(path: Path, clips: list[tuple[str, list[dict]]]) -> None:
    """AudioSet-strong's annotation table (segment_id, start_time_seconds, end_time_seconds, label) of the clips."""
    with open(path, "w") as handle:
        handle.write("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n")
        for clip_id, events in clips:
            for event in events:
                handle.write(f"{clip_id}\t{event['onset']:.6f}\t{event['offset']:.6f}\t{event['label']}\n")


def write_labels_csv(path: Path) -> None:
    with open(path, "w") as handle:
        handle.write("index,mid,display_name\n")
        for index, name in enumerate(CLASSES):
            handle.write(f'{index},{mid(name)},"{name}"\n')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-singles", type=int, default=1400)
    parser.add_argument("--train-scenes", type=int, default=400)
    parser.add_argument("--validation-singles", type=int, default=160)
    parser.add_argument("--validation-scenes", type=int, default=60)
    parser.add_argument("--test-singles", type=int, default=320)
    parser.add_argument("--test-scenes", type=int, default=120)
    parser.add_argument("--eval-singles", type=int, default=0, help="the eval split (made only when --splits names it)")
    parser.add_argument("--eval-scenes", type=int, default=48, help="eval split: SED test scenes (1-3 events each)")
    parser.add_argument(
        "--eval-babble", metavar="WAV",
        help="eval split: the babble recording its backgrounds are cut from (e.g. ../shared/fixtures/babble_all.wav; "
        "default: espeak-ng babble of the test voices)",
    )  # fmt: skip
    parser.add_argument("--shards", type=int, default=2, help="parquet files per split")
    parser.add_argument("--babble-tracks", type=int, default=6, help="babble recordings made per split (backgrounds)")
    parser.add_argument("--babble-seconds", type=float, default=30.0, help="length of each babble recording")
    parser.add_argument("--workers", type=int, default=2, help="processes synthesising clips (the result does not depend on it)")
    parser.add_argument("--splits", nargs="+", default=["train", "validation", "test"], choices=list(SPLIT_SEEDS))
    args = parser.parse_args(argv)
    for name in SPLIT_SEEDS:
        if getattr(args, f"{name}_singles") < 0 or getattr(args, f"{name}_scenes") < 0:
            parser.error(f"--{name}-singles and --{name}-scenes must be >= 0")
    if args.babble_tracks < 1 or args.babble_seconds < SCENE_SECONDS:
        parser.error(f"--babble-tracks must be >= 1 and --babble-seconds >= {SCENE_SECONDS} (a scene's length)")
    if args.shards < 1:
        parser.error("--shards must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    require_tools()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_labels_csv(output_dir / "labels.csv")
    manifest = {"arguments": vars(args), "classes": CLASSES, "accents": ACCENTS, "splits": {}}
    for split in args.splits:
        singles, scenes = getattr(args, f"{split}_singles"), getattr(args, f"{split}_scenes")
        print(f"{split}: {singles} single-label clips, {scenes} scenes", file=sys.stderr, flush=True)
        manifest["splits"][split] = build_split(
            split, singles, scenes, args.seed, output_dir, args.shards, args.workers, args.babble_tracks,
            args.babble_seconds, args.eval_babble if split == "eval" else None,
        )  # fmt: skip
    (output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
