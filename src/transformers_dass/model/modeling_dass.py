"""PyTorch DASS: a VMamba-style state-space audio tagger (Bhati et al., SLT 2024).

The spectrogram (batch, frames, mel bins) is read as a one-channel image whose height is frequency and
width is time. A patch embedding divides both by 4; four stages of VSS blocks follow, with a stride-2
convolution between stages; a LayerNorm, global average pooling and a linear head give the logits.
No positional embedding: any number of frames works.

Inside the blocks features are channels-last (batch, height, width, channels), so that norms and
projections are plain `nn.LayerNorm` / `nn.Linear`; outputs handed to the user are channels-first
(batch, channels, height, width), as in the original code and transformers' convolutional models.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from ..ops import NUM_DIRECTIONS
from .configuration_dass import INFERENCE_MODES, DassConfig
from .hub_layout import register_hub_layout
from .layers import (
    DassFrameSkip,
    DassPatchEmbeddings,
    DassSS2D,
    DassStage,
    DassZeroInitLinear,
    channels_first,
    channels_last,
)
from .lean_inference import lean_forward
from .readout import pool_frame_logits, resolve_clip_pooling, step_hidden_states, upsample_frame_logits
from .steps import num_steps, step_times, steps_holding_audio

logger = logging.get_logger(__name__)


@dataclass
class DassModelOutput(ModelOutput):
    """Output of `DassModel`.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, dims[-1], mel_bins / 32, frames / 32)`):
            Feature map of the last stage after the final LayerNorm (sizes rounded up at every stride 2).
        pooler_output (`torch.FloatTensor` of shape `(batch, dims[-1])`):
            `last_hidden_state` averaged over frequency and time; the classifier's input.
        hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`):
            `1 + num_stages` channels-first maps: the patch embedding `(batch, dims[0], F/4, T/4)`, then the
            output of each stage's blocks before its downsampling, `(batch, dims[i], F/2^(i+2), T/2^(i+2))`.
        pooled_stage_outputs (`tuple(torch.FloatTensor)`, returned with `pooled_stages=`):
            For each stage `s` asked for, the output of its blocks (before the downsampling) averaged over
            frequency, `(batch, T/2^(s+2), dims[s])`: one vector per time step of that stage.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    pooled_stage_outputs: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class DassAudioClassifierOutput(ModelOutput):
    """Output of `DassForAudioClassification`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given):
            BCE (multi-label), cross-entropy (single-label) or MSE (regression), per `config.problem_type`.
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Scores before sigmoid / softmax.
        hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`):
            As in `DassModelOutput.hidden_states`.
        frame_logits (`torch.FloatTensor` of shape `(batch, time_steps, num_labels)`, returned with
            `return_frame_logits=True`):
            Scores of each time step of the last feature map (`time_steps = ceil(frames / 32)`): the map pooled
            over frequency only, then the classifier applied per step. Their mean over time equals the `"mean"` logits.
            Step `j` sits over input frames `[32 j, 32 (j + 1))` (see `frame_step_times`); the scan mixes the
            whole clip into every step, so this places a step, it does not bound what it saw.
        attention_logits (`torch.FloatTensor` of shape `(batch, time_steps, num_labels)`, returned with
            `return_frame_logits=True` by models with an attention head (`config.clip_pooling="attention"`)):
            The head's per-step attention logits, which `readout.pool_frame_logits(..., "attention")` weighs the
            steps with.
        fine_frame_logits (`torch.FloatTensor` of shape `(batch, steps, num_labels)`, returned with
            `return_fine_frame_logits=True`):
            The scores of `DassForAudioFrameClassification` on the same input (its `logits`): `frame_logits` on
            steps of `config.fine_step_frames` input frames (40 ms by default), plus the frame skips' scores in
            models that have them (`config.frame_skip_stages`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    frame_logits: torch.FloatTensor | None = None
    attention_logits: torch.FloatTensor | None = None
    fine_frame_logits: torch.FloatTensor | None = None


@dataclass
class DassFrameClassifierOutput(ModelOutput):
    """Output of `DassForAudioFrameClassification`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given):
            Per `config.problem_type` over the steps that hold audio (see `DassForAudioFrameClassification.forward`).
        logits (`torch.FloatTensor` of shape `(batch, steps, num_labels)`):
            Scores of each step of `config.fine_step_frames` input frames (40 ms by default), before sigmoid /
            softmax; `frame_times(frames)` gives each step's start and end in seconds. Steps past a shorter clip's
            audio in a batch of clips of different lengths hold 0.
        clip_logits (`torch.FloatTensor` of shape `(batch, num_labels)`, returned with `return_clip_logits=True`):
            The clip readout of `config.clip_pooling` (or `clip_pooling=`), as `DassForAudioClassification`'s
            `logits`.
        hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`):
            As in `DassModelOutput.hidden_states`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    clip_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class _StepScores:
    """What one forward of `_DassScoringModel._score_steps` gives (shapes there)."""

    outputs: DassModelOutput
    logits: torch.Tensor
    frame_logits: torch.Tensor | None
    attention_logits: torch.Tensor | None
    fine_frame_logits: torch.Tensor | None


def _keep_hidden_state(hidden_states: torch.Tensor, kept: tuple) -> tuple[torch.Tensor, tuple]:
    """Append the channels-first view of a (B, H, W, C) map to `kept` and continue from that very tensor, so that
    the returned hidden state is part of the graph: its `.grad` (after `retain_grad()`) is the gradient of the
    output, as gradient-based attributions need. Returns (the map to continue with, channels-last, and `kept`)."""
    returned = channels_first(hidden_states)
    return channels_last(returned), kept + (returned,)


class DassPreTrainedModel(PreTrainedModel):
    config_class = DassConfig
    config: DassConfig
    base_model_prefix = "dass"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["DassBlock"]
    # Kept float32 (created so, and when the model is loaded or cast in bf16/fp16: precision.py). The
    # scan reads A_log, D and the dt bias in float32 anyway (its state is float32), and rounding them to bf16 would
    # move every step size: softplus(dt + bias) with bias ~ -2..-7 is off by up to |bias| * 2^-8 (2.7 % at -7: the
    # exp of the bias error), seven times bf16's own rounding of 2^-8, in all 4 directions of every block.
    _keep_in_fp32_modules_strict = ["A_log", "D", "dt_proj_bias"]

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained`, writing this package's layout by default: a model read from the Hub
        remote-code layout (see `hub_layout.py`) is saved in the native one unless `save_original_format=True`."""
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoModel"):
        """A no-op: DASS folders name their Auto classes through `auto_map` entries that import the installed
        package (see `auto_module.py`); transformers' default would copy this package's source into the folder."""

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """VMamba's initialisation: linears truncated-normal (std `initializer_range`), norms 1/0, convolutions
        PyTorch's default (Kaiming-uniform) rather than the library's normal(0, initializer_range), then the SS2D
        parameters. Small models trained from scratch on little data learn faster with a larger
        `initializer_range` (e.g. 0.1, as the demo model in reports/demo)."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, DassZeroInitLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)
        if isinstance(module, DassSS2D):
            self._init_ss2d(module)

    def _init_ss2d(self, module: DassSS2D) -> None:
        """Mamba/VMamba initialisation: dt in [1e-3, 1e-1] log-uniformly, S4D-real A, unit skip."""
        init.uniform_(module.x_proj_weight, -(module.inner_dim**-0.5), module.inner_dim**-0.5)
        init.uniform_(module.dt_proj_weight, -(module.dt_rank**-0.5), module.dt_rank**-0.5)
        dt_min, dt_max = 1e-3, 1e-1
        dt = torch.exp(
            torch.rand(module.dt_proj_bias.shape) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=1e-4)
        init.copy_(module.dt_proj_bias, dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        states = torch.arange(1, module.d_state + 1, dtype=torch.float32)
        init.copy_(module.A_log, torch.log(states).expand_as(module.A_log))
        init.ones_(module.D)


class DassModel(DassPreTrainedModel):
    def __init__(self, config: DassConfig):
        super().__init__(config)
        self.config = config
        self.embeddings = DassPatchEmbeddings(config)
        num_blocks = sum(config.depths)
        # Stochastic depth grows linearly from 0 to drop_path_rate over all blocks.
        rates = [config.drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        starts = [sum(config.depths[:i]) for i in range(len(config.depths))]
        self.stages = nn.ModuleList(
            DassStage(config, i, rates[start : start + depth])
            for i, (start, depth) in enumerate(zip(starts, config.depths))
        )
        self.layernorm = nn.LayerNorm(config.dims[-1], eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Conv2d:
        """The first layer on the input, the patch embedding's first convolution: what `enable_input_require_grads`
        hooks so that gradient checkpointing and adapters still get gradients when the model itself is frozen."""
        return self.embeddings.conv1

    def freeze_feature_encoder(self) -> None:
        """Stop gradients to the patch embedding (the two convolutions that turn the spectrogram into patches): the
        "feature encoder" that transformers' audio fine-tuning recipes freeze. The stages and the head still train."""
        for parameter in self.embeddings.parameters():
            parameter.requires_grad = False

    def _check_input(self, input_values: torch.Tensor) -> None:
        if not torch.is_tensor(input_values):
            raise TypeError(
                f"`input_values` must be a torch.Tensor of shape (batch, frames, {self.config.num_mel_bins}), got "
                f"{type(input_values).__name__}; use DassFeatureExtractor(..., return_tensors='pt')."
            )
        if input_values.ndim != 3:
            hint = " Add a batch dimension with `input_values.unsqueeze(0)`." if input_values.ndim == 2 else ""
            raise ValueError(
                f"`input_values` must have shape (batch, frames, mel bins), got {tuple(input_values.shape)}.{hint}"
            )
        if input_values.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"`input_values` has {input_values.shape[-1]} mel bins in its last dimension; this model expects "
                f"{self.config.num_mel_bins}. The layout is (batch, frames, mel bins): transpose if you passed "
                "(batch, mel bins, frames)."
            )
        if input_values.shape[0] == 0 or input_values.shape[1] == 0:
            raise ValueError(f"`input_values` is empty: shape {tuple(input_values.shape)}; give at least one frame.")

    def _use_lean_path(self, input_values: torch.Tensor, inference_mode: str | None) -> bool:
        """Whether this call takes the memory-lean path (see `DassConfig.inference_mode`)."""
        mode = inference_mode if inference_mode is not None else self.config.inference_mode
        if mode not in INFERENCE_MODES:
            raise ValueError(f"`inference_mode` must be one of {INFERENCE_MODES}, got {mode!r}.")
        inferring = not self.training and not torch.is_grad_enabled()
        if mode == "lean" and not inferring:
            raise ValueError(
                "inference_mode='lean' runs inference only: call `model.eval()` and run it under `torch.no_grad()` "
                "or `torch.inference_mode()`, or pass inference_mode='standard' to train or take gradients."
            )
        if mode == "auto":
            return inferring and input_values.shape[1] >= self.config.lean_threshold_frames
        return mode == "lean"

    def forward(
        self,
        input_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inference_mode: str | None = None,
        show_progress: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        pooled_stages: Sequence[int] = (),
        **kwargs,
    ) -> DassModelOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, frames, num_mel_bins)`):
                Normalised kaldi fbank features from `DassFeatureExtractor`; any number of frames >= 1.
            attention_mask (`torch.Tensor` of shape `(batch, frames)`, *optional*):
                Accepted from `DassFeatureExtractor` when every clip fills the batch; clips of different lengths
                have feature maps of different sizes, so they are refused here (run them one at a time).
            inference_mode (`str`, *optional*):
                `"auto"`, `"lean"` or `"standard"`; defaults to `config.inference_mode`. The lean path computes
                the same outputs layer by layer in chunks, in a fraction of the memory (inference only).
            show_progress (`bool`, *optional*):
                On the lean path, a progress bar over the layers (for long inputs); by default where stderr is a
                terminal, so that `pipeline()` on an hour of audio shows one in a console and none in a log.
            pooled_stages (`Sequence[int]`, *optional*):
                Stages whose outputs to return averaged over frequency, as `pooled_stage_outputs`, in increasing
                stage order (on both paths; small even for hours of audio, unlike `hidden_states`).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_input(input_values)
        if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < len(self.stages) for s in pooled_stages):
            raise ValueError(
                f"`pooled_stages` must be stage indices in [0, {len(self.stages)}), got {pooled_stages!r}."
            )
        if _clip_frames(attention_mask, input_values.shape) is not None:
            raise ValueError(
                "attention_mask marks clips of different lengths: DassModel cannot stack their feature maps. Run "
                "them one at a time, or use DassForAudioClassification, which groups them by length."
            )

        # (B, T, F) -> one-channel image (B, 1, F, T): height = frequency, width = time.
        pixel_values = input_values.transpose(1, 2).unsqueeze(1).to(self.embeddings.conv1.weight.dtype)
        if self._use_lean_path(input_values, inference_mode):
            # The same layers in chunks, residuals updated in place: for hours of audio (lean_inference.py).
            show = sys.stderr.isatty() if show_progress is None else show_progress
            hidden_states, all_hidden_states, pooled = lean_forward(
                self, pixel_values, output_hidden_states, show, pooled_stages
            )
        else:
            hidden_states = self.embeddings(pixel_values)
            all_hidden_states = None
            pooled = ()
            if output_hidden_states:
                hidden_states, all_hidden_states = _keep_hidden_state(hidden_states, ())
            for index, stage in enumerate(self.stages):
                for block in stage.blocks:
                    hidden_states = block(hidden_states)
                if index in pooled_stages:
                    pooled += (hidden_states.mean(dim=1),)  # (B, H, W, C) -> (B, W, C)
                if output_hidden_states:
                    hidden_states, all_hidden_states = _keep_hidden_state(hidden_states, all_hidden_states)
                if stage.downsample is not None:
                    hidden_states = stage.downsample(hidden_states)

        last_hidden_state = channels_first(self.layernorm(hidden_states))
        pooled_output = last_hidden_state.mean(dim=(2, 3))

        pooled = pooled if pooled_stages else None
        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled_output, all_hidden_states, pooled) if v is not None)
        return DassModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            pooled_stage_outputs=pooled,
        )


class _DassScoringModel(DassPreTrainedModel):
    """What `DassForAudioClassification` and `DassForAudioFrameClassification` share: the same modules (so one
    folder loads in both with no missing or unexpected weights), the scores of each time step, their times, and
    the loss by `config.problem_type`. Not used on its own."""

    # Also the classifier and, in models that have one, the attention head (hidden x labels, ~0.4 M multiply-adds
    # each): float32 logits and scores, not rounded to bf16's 8 bits, for no measurable cost.
    _keep_in_fp32_modules_strict = [*DassPreTrainedModel._keep_in_fp32_modules_strict, "classifier"]

    def __init__(self, config: DassConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.dass = DassModel(config)
        # float32 whatever the default dtype: see _keep_in_fp32_modules_strict
        num_labels = config.num_labels
        self.classifier = nn.Linear(config.hidden_size, num_labels, dtype=torch.float32) if num_labels > 0 else nn.Identity()
        # PANNs' decision-level attention: one attention logit per step and label, softmax over time. Only models
        # that read clips out with it carry it, so that every other folder keeps exactly the weights it has.
        self.clip_attention = None
        if config.clip_pooling == "attention":
            self.clip_attention = nn.Linear(config.hidden_size, num_labels, dtype=torch.float32)
            self._keep_in_fp32_modules_strict = [*type(self)._keep_in_fp32_modules_strict, "clip_attention"]
        # Heads on earlier stages that refine the frame model's steps (config.frame_skip_stages), same rule.
        self.frame_skips = None
        if config.frame_skip_stages:
            self.frame_skips = nn.ModuleDict({str(s): DassFrameSkip(config, s) for s in config.frame_skip_stages})
            self._keep_in_fp32_modules_strict = [*self._keep_in_fp32_modules_strict, "frame_skips"]
        self.post_init()

    def _score_steps(
        self,
        input_values: torch.Tensor,
        clip_pooling: str | None,
        return_frame_logits: bool,
        output_hidden_states: bool | None,
        inference_mode: str | None,
        show_progress: bool | None,
        fine_steps: bool = False,
    ) -> _StepScores:
        """One forward of the clips: their clip logits (batch, num_labels) by `clip_pooling` (None: the config's)
        and, when `return_frame_logits` or the readout needs them, the frame and attention logits (batch,
        time_steps, num_labels); with `fine_steps`, also the frame model's logits (see `_fine_frame_logits`)."""
        skips = self.frame_skips is not None and fine_steps
        outputs = self.dass(
            input_values,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            inference_mode=inference_mode,
            show_progress=show_progress,
            pooled_stages=self.config.frame_skip_stages if skips else (),
        )
        logits = self.classifier(outputs.pooler_output.to(self._head_dtype()))
        pooling = resolve_clip_pooling(
            self.config.clip_pooling if clip_pooling is None else clip_pooling,
            input_values.shape[1],
            self.config.training_length_frames,
        )
        frame_logits = attention_logits = fine_frame_logits = None
        if return_frame_logits or fine_steps or pooling != "mean":
            # (B, C, F', T'): pool over frequency only, then the (linear) head at every time step, so that
            # the time average of frame_logits is the clip's logits.
            steps = step_hidden_states(outputs.last_hidden_state).to(self._head_dtype())
            frame_logits = self.classifier(steps)
            if self.clip_attention is not None:
                attention_logits = self.clip_attention(steps)
        if pooling != "mean":
            logits = pool_frame_logits(frame_logits, pooling, attention_logits)  # readout.py: the one place readouts are made
        if fine_steps:
            stage_steps = outputs.pooled_stage_outputs if skips else ()
            fine_frame_logits = self._fine_frame_logits(frame_logits, stage_steps, input_values.shape[1])
        return _StepScores(outputs, logits, frame_logits, attention_logits, fine_frame_logits)

    def _fine_frame_logits(
        self, frame_logits: torch.Tensor, stage_steps: tuple[torch.Tensor, ...], num_frames: int
    ) -> torch.Tensor:
        """The frame model's logits (batch, ceil(num_frames / fine_step_frames), num_labels): `frame_logits`
        (0.32 s steps) interpolated to the fine steps, plus, for each of `config.frame_skip_stages` (with
        `stage_steps` its frequency-pooled output, (batch, stage steps, dims[s])), its skip head's scores
        interpolated the same way from that stage's coarser-than-fine steps."""
        config = self.config
        steps = num_steps(num_frames, config.fine_step_frames)
        fine = upsample_frame_logits(frame_logits, config.frame_upsampling, steps)
        for stage, hidden in zip(config.frame_skip_stages, stage_steps):
            factor = config.stage_step_frames(stage) // config.fine_step_frames
            fine = fine + upsample_frame_logits(self.frame_skips[str(stage)](hidden), factor, steps)
        return fine

    def _head_dtype(self) -> torch.dtype:
        """The classifier's dtype, which its input is cast to: float32 in a bf16 model (see
        `_keep_in_fp32_modules_strict`), so that the logits come out in float32."""
        weight = getattr(self.classifier, "weight", None)
        return weight.dtype if isinstance(weight, torch.Tensor) else self.dass.layernorm.weight.dtype

    def _outputs_by_length(
        self, input_values: torch.Tensor, clip_frames: torch.Tensor, fields: dict[str, int | None], **forward_kwargs
    ) -> dict[str, torch.Tensor]:
        """Output fields of clips of different lengths: each group of equal length runs alone on its own frames,
        (group, length, bins), so padding never reaches a clip's scans.

        `fields` maps an output name to its number of time steps for the whole batch (its dim 1, which a group's
        shorter output fills from the start, zeros after) or None for a field without a time axis. Returns
        {name: (batch, ...)}."""
        found: dict[str, torch.Tensor] = {}
        for length in clip_frames.unique().tolist():
            rows = (clip_frames == length).nonzero().squeeze(1)
            group = self(input_values[rows, :length], return_dict=True, **forward_kwargs)
            for name, steps in fields.items():
                value = group[name]
                if name not in found:
                    shape = (input_values.shape[0],) + ((steps,) if steps is not None else value.shape[1:2]) + value.shape[2:]
                    found[name] = value.new_zeros(shape)
                found[name][rows, : value.shape[1]] = value
        return found

    def freeze_feature_encoder(self) -> None:
        """Stop gradients to the patch embedding (DASS's feature encoder), as `DassModel.freeze_feature_encoder`."""
        self.dass.freeze_feature_encoder()

    @property
    def frames_per_step(self) -> int:
        """Input frames per time step of the last feature map: the product of the time strides (32 for DASS,
        0.32 s at a 10 ms hop); `config.frames_per_step`."""
        return self.config.frames_per_step

    def frame_step_times(self, num_frames: int, frame_shift: float = 0.01) -> torch.Tensor:
        """(time_steps, 2) start and end in seconds of the input frames under each step of `frame_logits`.

        Step `j` covers frames `[j * frames_per_step, min((j + 1) * frames_per_step, num_frames))`, frame `i`
        starting at `i * frame_shift` seconds (10 ms for `DassFeatureExtractor`); see `steps.py`.
        """
        return step_times(num_frames, self.frames_per_step, frame_shift)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss chosen by `config.problem_type`; when it is unset, inferred from the labels as transformers' models
        do (one label: regression; integer labels: single-label; otherwise multi-label) and stored in the config."""
        labels = labels.to(logits.device)
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif self.num_labels > 1 and labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        problem_type = self.config.problem_type
        if problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
            return F.mse_loss(logits.float(), labels.float())
        if problem_type == "single_label_classification":
            if labels.ndim != 1:
                raise ValueError(
                    f"single_label_classification expects class indices of shape (batch,), got {tuple(labels.shape)}; "
                    "set config.problem_type='multi_label_classification' for multi-hot targets."
                )
            return F.cross_entropy(logits.float(), labels.long())
        if labels.shape != logits.shape:
            raise ValueError(
                f"multi_label_classification expects multi-hot labels of shape {tuple(logits.shape)}, got "
                f"{tuple(labels.shape)}; set config.problem_type='single_label_classification' for class indices."
            )
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class DassForAudioClassification(_DassScoringModel):
    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_frame_logits: bool = False,
        inference_mode: str | None = None,
        show_progress: bool | None = None,
        clip_pooling: str | None = None,
        attention_mask: torch.Tensor | None = None,
        return_fine_frame_logits: bool = False,
        **kwargs,
    ) -> DassAudioClassifierOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, frames, num_mel_bins)`):
                Normalised kaldi fbank features from `DassFeatureExtractor`.
            attention_mask (`torch.Tensor` of shape `(batch, frames)`, *optional*):
                From `DassFeatureExtractor`: 1 on the frames of each clip, 0 on the padding that batches it with
                longer clips. DASS has no masking inside its scans, so clips of different lengths are run in groups
                of equal length and each gets the answer it gets alone; only `logits` and `loss` are returned then.
            labels (`torch.Tensor`, *optional*):
                Multi-label: `(batch, num_labels)` multi-hot (soft targets allowed). Single-label: `(batch,)`
                class indices. Regression: `(batch, num_labels)` or `(batch,)` when `num_labels == 1`.
            return_frame_logits (`bool`, defaults to `False`):
                Also return `frame_logits` (batch, time_steps, num_labels): scores over time (and, with an
                attention head, `attention_logits`).
            return_fine_frame_logits (`bool`, defaults to `False`):
                Also return `fine_frame_logits`: what `DassForAudioFrameClassification` returns as `logits` for
                the same input (40 ms steps by default), from the same forward.
            inference_mode, show_progress: as in `DassModel.forward`.
            clip_pooling (`str`, *optional*):
                How `logits` (and the loss) read the clip out of the time steps: `"mean"` (the pooled features,
                the paper's model), `"max"` (per label, the highest step of `frame_logits`), `"linear_softmax"`,
                `"attention"` (models created with it only) or `"auto"` (mean up to
                `config.training_length_frames` input frames, max beyond); defaults to `config.clip_pooling`. See
                `readout.py`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        clip_frames = _clip_frames(attention_mask, input_values.shape)
        if clip_frames is not None:
            if output_hidden_states or return_frame_logits or return_fine_frame_logits:
                raise ValueError(
                    "hidden states and frame_logits of a batch of clips of different lengths cannot be stacked; "
                    "pass the clips one at a time (or drop attention_mask rows of padding) to get them."
                )
            logits = self._outputs_by_length(
                input_values,
                clip_frames,
                {"logits": None},
                inference_mode=inference_mode,
                show_progress=show_progress,
                clip_pooling=clip_pooling,
                **kwargs,
            )["logits"]
            loss = self.compute_loss(logits, labels) if labels is not None else None
            if not return_dict:
                return (logits,) if loss is None else (loss, logits)
            return DassAudioClassifierOutput(loss=loss, logits=logits)
        scores = self._score_steps(
            input_values,
            clip_pooling,
            return_frame_logits,
            output_hidden_states,
            inference_mode,
            show_progress,
            fine_steps=return_fine_frame_logits,
        )
        logits = scores.logits
        loss = self.compute_loss(logits, labels) if labels is not None else None
        frame_logits, attention_logits = (
            (scores.frame_logits, scores.attention_logits) if return_frame_logits else (None, None)
        )

        if not return_dict:
            extra = (scores.outputs.hidden_states, frame_logits, attention_logits, scores.fine_frame_logits)
            output = (logits,) + tuple(v for v in extra if v is not None)
            return ((loss,) + output) if loss is not None else output
        return DassAudioClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=scores.outputs.hidden_states,
            frame_logits=frame_logits,
            attention_logits=attention_logits,
            fine_frame_logits=scores.fine_frame_logits,
        )


class DassForAudioFrameClassification(_DassScoringModel):
    """DASS as a sound event detector: scores of every step of `config.fine_step_frames` input frames (40 ms by
    default), for transformers' `AutoModelForAudioFrameClassification`.

    The same modules as `DassForAudioClassification` (any DASS folder loads in either, with no missing or
    unexpected weights): its `frame_logits`, one step per `frames_per_step` (32) input frames, upsampled
    `config.frame_upsampling` times by linear interpolation in time (`readout.upsample_frame_logits`: values at
    the step centres, see there for the alignment). `frame_times(frames)` gives each step's seconds. Models made
    with `config.frame_skip_stages` add the scores of earlier, finer stages (`DassFrameSkip`), interpolated the
    same way from their own steps (0.16 s for stage 2, 0.08 s for stage 1): the last stage's scores cannot move an
    edge by less than 0.32 s, and sound event metrics count a detection that spills over an event's edges.
    """

    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_clip_logits: bool = False,
        clip_pooling: str | None = None,
        inference_mode: str | None = None,
        show_progress: bool | None = None,
        **kwargs,
    ) -> DassFrameClassifierOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, frames, num_mel_bins)`):
                Normalised kaldi fbank features from `DassFeatureExtractor`; any length, hours included (the
                memory-lean path, `inference_mode`, as for `DassForAudioClassification`).
            labels (`torch.Tensor`, *optional*):
                Per-step targets on the grid of `frame_times(frames)`. Multi-label: `(batch, steps, num_labels)`
                multi-hot or soft (BCE). Single-label: `(batch, steps)` class indices, -100 ignored (cross-entropy).
                Regression: `(batch, steps, num_labels)`, or `(batch, steps)` with one label (MSE). The loss is the
                mean over the steps that hold audio, as `config.problem_type` (inferred as
                `DassForAudioClassification` infers it when unset).
            attention_mask (`torch.Tensor` of shape `(batch, frames)`, *optional*):
                From `DassFeatureExtractor`: 1 on each clip's frames. Clips of different lengths run in groups of
                equal length (each gets the answer it gets alone); a step counts for the loss when it holds at
                least one of its clip's frames, and the logits of the other steps are 0.
            return_clip_logits (`bool`, defaults to `False`):
                Also return `clip_logits`, the clip readout of `clip_pooling` (default `config.clip_pooling`), from
                the same forward.
            inference_mode, show_progress: as in `DassModel.forward`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        steps = num_steps(input_values.shape[1], self.config.fine_step_frames)
        clip_frames = _clip_frames(attention_mask, input_values.shape)
        step_mask = hidden_states = None
        if clip_frames is not None:
            if output_hidden_states:
                raise ValueError(
                    "hidden states of a batch of clips of different lengths cannot be stacked; pass the clips one at "
                    "a time (or drop attention_mask rows of padding) to get them."
                )
            fields = {"logits": steps, **({"clip_logits": None} if return_clip_logits else {})}
            found = self._outputs_by_length(
                input_values,
                clip_frames,
                fields,
                return_clip_logits=return_clip_logits,
                clip_pooling=clip_pooling,
                inference_mode=inference_mode,
                show_progress=show_progress,
                **kwargs,
            )
            logits, clip_logits = found["logits"], found.get("clip_logits")
            step_mask = steps_holding_audio(clip_frames.to(logits.device), self.config.fine_step_frames, steps)
        else:
            scores = self._score_steps(
                input_values,
                clip_pooling if return_clip_logits else "mean",
                False,
                output_hidden_states,
                inference_mode,
                show_progress,
                fine_steps=True,
            )
            logits = scores.fine_frame_logits
            clip_logits = scores.logits if return_clip_logits else None
            hidden_states = scores.outputs.hidden_states
        loss = self.compute_frame_loss(logits, labels, step_mask) if labels is not None else None

        if not return_dict:
            output = (logits,) + tuple(v for v in (clip_logits, hidden_states) if v is not None)
            return ((loss,) + output) if loss is not None else output
        return DassFrameClassifierOutput(loss=loss, logits=logits, clip_logits=clip_logits, hidden_states=hidden_states)

    def frame_times(self, num_frames: int, frame_shift: float = 0.01) -> torch.Tensor:
        """(steps, 2) float64 start and end in seconds of each step of `logits` for an input of `num_frames` frames.

        Step `k` covers input frames `[k s, min((k + 1) s, num_frames))`, s = `config.fine_step_frames`, frame `i`
        starting at `i * frame_shift` seconds: the grid of `frame_step_times` with `frame_upsampling` times
        shorter steps.
        """
        return step_times(num_frames, self.config.fine_step_frames, frame_shift)

    def compute_frame_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, step_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`compute_loss` over the steps of (batch, steps, num_labels) `logits` where `step_mask` (batch, steps)
        is True (all when None): each such step is one example, with labels as in `forward`."""
        if labels.shape[:2] != logits.shape[:2]:
            raise ValueError(
                f"frame labels must give a target to each step of the logits, (batch, steps) = {tuple(logits.shape[:2])} "
                f"first, got {tuple(labels.shape)}; build them on the grid of `frame_times(frames)`"
            )
        labels = labels.to(logits.device)
        if step_mask is None:
            return self.compute_loss(logits.flatten(0, 1), labels.flatten(0, 1))
        return self.compute_loss(logits[step_mask], labels[step_mask])


def _clip_frames(attention_mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """Frames of each clip, (batch,) int64, when `attention_mask` (batch, frames) marks clips shorter than the
    batch; None when there is no mask or every clip fills it. Refuses masks that are not 1s then 0s."""
    if attention_mask is None:
        return None
    batch, frames = shape[0], shape[1]
    if attention_mask.shape != (batch, frames):
        raise ValueError(
            f"attention_mask must be (batch, frames) = {(batch, frames)} like input_values, got {tuple(attention_mask.shape)}"
        )
    lengths = attention_mask.to(torch.int64).sum(dim=1)
    positions = torch.arange(frames, device=attention_mask.device)
    if not torch.equal(attention_mask.to(torch.bool), positions[None, :] < lengths[:, None]) or (lengths == 0).any():
        raise ValueError(
            "attention_mask must mark each clip's frames from the start (1s, then 0s for batch padding) and at "
            "least one frame per clip, as DassFeatureExtractor returns it"
        )
    return None if bool((lengths == frames).all()) else lengths.cpu()


# Folders in the authors' Hub remote-code layout load through transformers' checkpoint conversion mapping.
register_hub_layout("DassModel", ("DassForAudioClassification", "DassForAudioFrameClassification"), NUM_DIRECTIONS)

__all__ = [
    "DassAudioClassifierOutput",
    "DassForAudioClassification",
    "DassForAudioFrameClassification",
    "DassFrameClassifierOutput",
    "DassModel",
    "DassModelOutput",
    "DassPreTrainedModel",
]
