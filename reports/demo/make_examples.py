#!/usr/bin/env python
"""The example clips in examples/ (README's main-job command classifies them with the bundled demo model).

    python reports/demo/make_examples.py --output-dir examples

- seven_in_babble.wav: "seven" spoken by a held-out espeak-ng voice at a held-out rate, in 3 s of synthetic
  babble (held-out talkers) at 10 dB SNR;
- scene_siren_three.wav: a 10 s scene of the test split's kind: a siren and the digit "three" over pink noise.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import make_demo_dataset as demo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    demo.require_tools()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    voices = demo.split_voices("test")

    seven = demo.speak("seven", "en-us+Andrea", 200, 40)
    babble = demo.make_babble(rng, 3.0, voices, talkers=6)
    mix = demo.scale_to_snr(babble, demo.rms(seven), 10.0)
    demo.place(mix, seven, int(0.9 * demo.RATE))
    soundfile.write(args.output_dir / "seven_in_babble.wav", 0.5 * mix / np.abs(mix).max(), demo.RATE, subtype="PCM_16")

    scene = demo.sox_synth(demo.SCENE_SECONDS, "pinknoise")[: int(demo.SCENE_SECONDS * demo.RATE)]
    scene = scene / np.float32(demo.rms(scene))
    siren = demo.make_siren(rng)
    three = demo.speak("three", "en-gb-x-rp+f5", 135, 60)
    demo.place(scene, 10 * siren / demo.rms(siren), int(1.5 * demo.RATE))
    demo.place(scene, 10 * three / demo.rms(three), int(6.8 * demo.RATE))
    soundfile.write(args.output_dir / "scene_siren_three.wav", 0.5 * scene / np.abs(scene).max(), demo.RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
