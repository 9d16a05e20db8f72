"""Test media written with PyAV itself (no ffmpeg on PATH): audio in the containers libsndfile does not read.

`write_media(path, audio, rate, codec=..., video=...)` encodes (samples, channels) float audio into the container
that the path's suffix names, optionally beside a small video stream or with a second audio stream.
"""

from __future__ import annotations

import fractions

import numpy as np

# suffix -> (container format, audio codec, video codec): what the tests write for each kind of file.
KINDS = {
    ".m4a": ("ipod", "aac", None),
    ".mp4": ("mp4", "aac", "mpeg4"),
    ".mov": ("mov", "aac", "mpeg4"),
    ".webm": ("webm", "libopus", "libvpx"),
    ".mkv": ("matroska", "aac", "mpeg4"),
    ".mka": ("matroska", "libopus", None),
    ".wma": ("asf", "wmav2", None),
    ".amr": ("amr", "libopencore_amrnb", None),
}
# Rates each codec encodes natively (others would be resampled by the encoder's input check).
CODEC_RATES = {"libopus": 48000, "libopencore_amrnb": 8000}
VIDEO_SIZE = (64, 48)
VIDEO_FPS = 10


def write_media(
    path,
    audio: np.ndarray,
    rate: int,
    *,
    video: bool | None = None,
    second_audio: np.ndarray | None = None,
    bit_rate: int = 128000,
) -> None:
    """Encode `audio` (samples, channels) float in [-1, 1] at `rate` Hz into `path` (its suffix: a key of KINDS).

    Args:
        video: add the kind's video stream (grey frames) before the audio; None: where the kind has one.
        second_audio: a second audio stream (samples, channels) at `rate`, written after the first.
        bit_rate: the audio encoder's bit rate.
    """
    import av

    suffix = "." + str(path).rsplit(".", 1)[-1].lower()
    container_format, codec, video_codec = KINDS[suffix]
    video = video_codec is not None if video is None else video
    with av.open(str(path), mode="w", format=container_format) as container:
        picture = None
        if video:
            picture = container.add_stream(video_codec, rate=VIDEO_FPS)
            picture.width, picture.height = VIDEO_SIZE
            picture.pix_fmt = "yuv420p"
        streams = [(_audio_stream(container, codec, rate, audio.shape[1], bit_rate), audio)]
        if second_audio is not None:
            streams.append((_audio_stream(container, codec, rate, second_audio.shape[1], bit_rate), second_audio))
        if picture is not None:
            frames = int(np.ceil(audio.shape[0] / rate * VIDEO_FPS))
            for index in range(frames):
                image = np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), (index * 7) % 256, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                container.mux(picture.encode(frame))
            container.mux(picture.encode(None))
        for stream, samples in streams:
            _encode_audio(container, stream, samples, rate)


def _audio_stream(container, codec: str, rate: int, channels: int, bit_rate: int):
    stream = container.add_stream(codec, rate=CODEC_RATES.get(codec, rate))
    stream.layout = "mono" if channels == 1 else "stereo"
    if codec != "libopencore_amrnb":
        stream.bit_rate = bit_rate
    return stream


def _encode_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    """Feed `samples` in 1024-sample frames (the encoder's resampler adapts rate and frame size), then flush."""
    import av

    planar = np.ascontiguousarray(np.clip(samples, -1, 1).T.astype(np.float32))
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=stream.codec_context.sample_rate)
    pts = 0
    for start in range(0, planar.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(planar[:, start : start + 1024], format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.time_base = fractions.Fraction(1, rate)
        frame.pts = start
        for converted in resampler.resample(frame):
            converted.pts = pts
            pts += converted.samples
            container.mux(stream.encode(converted))
    for converted in resampler.resample(None):
        converted.pts = pts
        pts += converted.samples
        container.mux(stream.encode(converted))
    container.mux(stream.encode(None))
