"""The HEAR 2021 API for DASS: `load_model`, `get_scene_embeddings`, `get_timestamp_embeddings`.

The common interface of the HEAR benchmark (https://hearbenchmark.com/hear-api.html), as `hear21passt` implements
it for PaSST, so that DASS can be compared with other audio encoders by the benchmark's tools:

    from transformers_dass import hear
    model = hear.load_model()                                  # "" = the bundled demo model; or a folder / Hub id
    scenes = hear.get_scene_embeddings(audio, model)           # audio (n, samples) at 16 kHz -> (n, D)
    steps, times_ms = hear.get_timestamp_embeddings(audio, model)   # (n, T, D), (n, T)

Features are `dass classify`'s (clips shorter than 10.24 s zero-padded to it), so a scene embedding equals the
`embedding` column `dass tag --embeddings` writes for the same waveform: `DassModel`'s `pooler_output`.

Timestamp embeddings: DASS's last stage has one step per 32 input frames (0.32 s). HEAR asks for a hop of 50 ms or
less, so the per-step embeddings (the last hidden state averaged over frequency) are interpolated linearly in time
between step centres to 40 ms steps (`model.readout.upsample_frame_logits`, as the frame model's scores are), and
only the steps that hold audio are returned; `times_ms` are the centres of those 40 ms steps.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .audio.fbank import FRAME_SHIFT_MS
from .inference.features import waveform_features
from .inference.loading import load_model as load_dass_model
from .model.readout import step_hidden_states, upsample_frame_logits
from .model.steps import num_steps

__all__ = ["DassHearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

# Input frames (10 ms each) per timestamp embedding: 40 ms, within HEAR's suggested 50 ms.
TIMESTAMP_STEP_FRAMES = 4


class DassHearModel(torch.nn.Module):
    """A `DassModel` with its feature extractor and the attributes HEAR asks for.

    Attributes:
        sample_rate: 16000, the rate the audio must have.
        scene_embedding_size, timestamp_embedding_size: D, the model's `hidden_size`.
        dass: the `DassModel` (the base model of the loaded classifier), in eval mode.
        extractor: its `DassFeatureExtractor`.
    """

    def __init__(self, dass_model, extractor):
        super().__init__()
        self.dass = dass_model.eval()
        self.extractor = extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.scene_embedding_size = self.timestamp_embedding_size = int(dass_model.config.hidden_size)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(scene (n, D), step embeddings (n, steps, D) at 0.32 s, input frames holding audio) of audio (n, samples)."""
        if audio.ndim != 2 or audio.shape[0] == 0:
            shape = tuple(audio.shape)
            raise ValueError(f"audio must be (n_sounds, samples) at {self.sample_rate} Hz, got shape {shape}")
        waveforms = audio.detach().to("cpu", torch.float32).numpy()
        recordings = [waveform_features(np.ascontiguousarray(w), self.extractor) for w in waveforms]
        features = torch.stack([r.input_values for r in recordings]).to(next(self.dass.parameters()).device)
        with torch.no_grad():  # not inference_mode: the embeddings may feed a probe that is trained
            output = self.dass(features, return_dict=True)
        steps = step_hidden_states(output.last_hidden_state)  # (n, C, F', T') -> (n, T', C)
        return output.pooler_output.float(), steps.float(), recordings[0].audio_frames


def load_model(model_file_path: str = "") -> DassHearModel:
    """The DASS model of a folder or Hub id, float32, for the HEAR API; "" is the bundled demo model."""
    loaded = load_dass_model(os.fspath(model_file_path) or None, dtype=None)
    return DassHearModel(loaded.model.dass, loaded.extractor)


def get_scene_embeddings(audio: torch.Tensor, model: DassHearModel) -> torch.Tensor:
    """(n, scene_embedding_size) float32 clip embeddings of audio (n, samples) at `model.sample_rate`."""
    return model(audio)[0]


def get_timestamp_embeddings(audio: torch.Tensor, model: DassHearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings every 40 ms over audio (n, samples) at `model.sample_rate`.

    Returns:
        (n, T, timestamp_embedding_size) float32 embeddings and (n, T) float32 times in milliseconds of the centre
        of each 40 ms step, T the steps that hold audio (`ceil(frames / 4)`).
    """
    _, steps, audio_frames = model(audio)
    frames_per_step = model.dass.config.frames_per_step
    factor = frames_per_step // TIMESTAMP_STEP_FRAMES
    kept = num_steps(audio_frames, TIMESTAMP_STEP_FRAMES)
    embeddings = upsample_frame_logits(steps, factor, kept).contiguous()
    # step k covers input frames [4k, 4k + 4), frame i starting at i * 10 ms (`model.steps`' grid): its centre is
    # at (k + 1/2) 40 ms
    centres = (torch.arange(kept, dtype=torch.float64) + 0.5) * TIMESTAMP_STEP_FRAMES * FRAME_SHIFT_MS
    times = centres.to(torch.float32).to(embeddings.device).expand(steps.shape[0], kept).contiguous()
    return embeddings, times
