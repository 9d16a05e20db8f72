"""DASS model configuration."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig
from transformers.utils import logging

from ..ops import SCAN_BACKENDS
from .auto_module import AUTO_MAP, write_auto_module
from .readout import CLIP_POOLING_CHOICES, check_clip_pooling

logger = logging.get_logger(__name__)

# Field names used by the Hub remote-code configs (saurabhati/DASS_*) -> ours.
_HUB_ALIASES = {"num_classes": "num_labels"}
# Hub remote-code fields that carry no information for this implementation.
_HUB_IGNORED = ("max_length", "use_checkpoint", "auto_map")
INFERENCE_MODES = ("auto", "lean", "standard")


class DassConfig(PreTrainedConfig):
    r"""Configuration of a DASS model (VMamba-style state-space audio tagger).

    The defaults build DASS-small (29,884,463 parameters with 527 labels); `DassConfig.medium()` builds
    DASS-medium (48,648,239 parameters).

    Args:
        dims (`list[int]`, defaults to `[96, 192, 384, 768]`):
            Channels of the four stages. `embed_dim` (Hub name) is accepted for `dims[0]` when `dims` is absent.
        depths (`list[int]`, defaults to `[2, 2, 8, 2]`):
            Number of VSS blocks per stage.
        d_state (`int`, defaults to 1):
            State size N of the selective scan.
        ssm_ratio (`float`, defaults to 1.0):
            Inner width of the state-space mixer relative to the stage width.
        dt_rank (`int`, `list[int]` or `"auto"`, defaults to `"auto"`):
            Rank R of the time-step projection; `"auto"` is `ceil(dim / 16)` per stage.
        mlp_ratio (`float`, defaults to 4.0):
            Hidden width of the block MLP relative to the stage width.
        ssm_conv (`int`, defaults to 3):
            Kernel size of the depthwise convolution before the scan.
        ssm_conv_bias (`bool`, defaults to `False`):
            Whether that convolution has a bias.
        patch_size (`int`, defaults to 4):
            Down-sampling of the patch embedding (two stride-`patch_size // 2` convolutions).
        num_mel_bins (`int`, defaults to 128):
            Mel bins of the input features (the image height).
        drop_path_rate (`float`, defaults to 0.2):
            Stochastic-depth rate, increasing linearly over the blocks.
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of every LayerNorm.
        hidden_act (`str`, defaults to `"gelu"`):
            Activation of the patch embedding and the MLPs.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the truncated normal used for linear weights.
        scan_backend (`str`, defaults to `"auto"`):
            Which implementation runs the selective scan: `"auto"` picks the fastest available for the input's
            device (or the `DASS_SCAN_BACKEND` environment variable), `"reference"` forces the PyTorch path,
            `"cpu"` / `"cuda"` the compiled kernels of `kernels/selective_scan`, `"mamba_ssm"` mamba-ssm's CUDA
            scan. A backend that cannot run falls back to the reference with one warning.
        inference_mode (`str`, defaults to `"auto"`):
            `"standard"`: the plain forward. `"lean"`: the memory-lean forward of `lean_inference.py` (same
            outputs within float rounding, a fraction of the memory; inference only: eval mode, no autograd).
            `"auto"`: lean in inference (eval mode, gradients off) for inputs of at least
            `lean_threshold_frames` frames, standard otherwise. `forward(..., inference_mode=)` overrides it.
        lean_threshold_frames (`int`, defaults to 6000):
            Input frames (10 ms each) from which `"auto"` takes the lean path.
        clip_pooling (`str`, defaults to `"auto"`):
            How `logits` read the clip out of the per-step scores (`readout.py`): `"mean"`, the paper's global
            average pooling; `"max"`, per label the highest time step of `frame_logits` (a short sound anywhere in
            a long recording); `"auto"`, the mean for inputs up to `training_length_frames` (the paper's logits,
            bit for bit) and the max beyond; `"linear_softmax"` and `"attention"`, readouts for training on clip
            labels whose frame scores localise (`"attention"` adds a trainable per-step attention head,
            `clip_attention`). `forward(..., clip_pooling=)` overrides it for one call; the loss uses the chosen
            readout. `pipeline()`, `dass classify` and the web demo all follow it.
        training_length_frames (`int`, defaults to 1024):
            Input length the model was trained on, in frames (the feature extractor's `max_length`; 1024 = 10.24
            s): where `clip_pooling="auto"` switches from the mean to the max.
        frame_upsampling (`int`, defaults to 8):
            Steps of `DassForAudioFrameClassification`'s logits per step of the last feature map: its scores of
            `frames_per_step` (32) input frames, 0.32 s, are interpolated linearly in time to steps of
            `frames_per_step // frame_upsampling` frames (`fine_step_frames`: 4 = 40 ms). Must divide
            `frames_per_step`, so that every step is whole input frames; 1 keeps the 0.32 s steps. No parameters
            depend on it.
        frame_skip_stages (`list[int]`, defaults to `[]`):
            Earlier stages whose outputs add detail to those frame scores: for each stage `s` listed, its output
            (before the downsampling, one step per `stage_step_frames(s)` input frames: 0.16 s for stage 2, 0.08 s
            for stage 1) is averaged over frequency and scored by a head of its own (`frame_skips`, LayerNorm +
            linear, zero at initialisation so that adding it changes nothing until it is trained); the scores,
            interpolated to the frame model's steps as the last stage's are, are added to them. The last stage's
            scores alone cannot place an edge finer than 0.32 s. Clip readouts (`logits`) do not use them. The
            heads exist only in models whose config lists stages, so every other folder keeps its weights.
        num_labels (`int`, defaults to 527):
            AudioSet classes by default. `num_classes` (Hub name) is accepted.
        problem_type (`str`, *optional*):
            `"multi_label_classification"` (sigmoid + BCE), `"single_label_classification"` (softmax + CE)
            or `"regression"` (MSE). Unset, the model infers it from the first labels it is given, as transformers'
            models do: integer class indices of shape `(batch,)` mean single-label, float `(batch, num_labels)`
            multi-label. Converted AudioSet checkpoints and Hub remote-code configs are multi-label. Loading a
            config with a new label set (`from_pretrained(..., num_labels=..., id2label=...)`) resets it unless
            `problem_type` is passed too: the old head's task does not carry over to a new head.
        label_mids (`list[str]`, *optional*):
            AudioSet machine ids (`/m/...`) of the labels, in label order, when known. Changing `id2label` (or
            `num_labels`) rebuilds them by label name when every new label is an old one, else drops them.

    Folders written by `save_pretrained` carry an `auto_map` to `dass_auto.py` (see `auto_module.py`), so that
    transformers' Auto classes load them with `trust_remote_code=True` without importing this package.

    Example:
    ```python
    >>> from transformers_dass import DassConfig, DassForAudioClassification
    >>> model = DassForAudioClassification(DassConfig())          # DASS-small, random weights
    >>> medium = DassForAudioClassification(DassConfig.medium())  # DASS-medium
    ```
    """

    model_type = "dass"

    def __init__(
        self,
        dims: list[int] | None = None,
        depths: list[int] | None = None,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank: int | list[int] | str = "auto",
        mlp_ratio: float = 4.0,
        ssm_conv: int = 3,
        ssm_conv_bias: bool = False,
        patch_size: int = 4,
        num_mel_bins: int = 128,
        drop_path_rate: float = 0.2,
        layer_norm_eps: float = 1e-5,
        hidden_act: str = "gelu",
        initializer_range: float = 0.02,
        scan_backend: str = "auto",
        inference_mode: str = "auto",
        lean_threshold_frames: int = 6000,
        clip_pooling: str = "auto",
        training_length_frames: int = 1024,
        frame_upsampling: int = 8,
        frame_skip_stages: list[int] | None = None,
        label_mids: list[str] | None = None,
        **kwargs,
    ):
        hub_fields = any(hub_name in kwargs for hub_name in _HUB_ALIASES)
        for hub_name, name in _HUB_ALIASES.items():
            if hub_name in kwargs:
                kwargs.setdefault(name, kwargs.pop(hub_name))
        embed_dim = kwargs.pop("embed_dim", None)
        for name in _HUB_IGNORED:
            kwargs.pop(name, None)
        if "num_labels" not in kwargs and "id2label" not in kwargs:
            kwargs["num_labels"] = 527
        if hub_fields:  # the authors' Hub checkpoints are AudioSet taggers: multi-label
            kwargs.setdefault("problem_type", "multi_label_classification")

        if dims is None:
            dims = [96, 192, 384, 768] if embed_dim is None else [embed_dim * 2**i for i in range(4)]
        self.dims = [int(d) for d in dims]
        self.depths = [int(d) for d in (depths if depths is not None else [2, 2, 8, 2])]
        self.d_state = d_state
        self.ssm_ratio = ssm_ratio
        self.dt_rank = dt_rank
        self.mlp_ratio = mlp_ratio
        self.ssm_conv = ssm_conv
        self.ssm_conv_bias = ssm_conv_bias
        self.patch_size = patch_size
        self.num_mel_bins = num_mel_bins
        self.drop_path_rate = drop_path_rate
        self.layer_norm_eps = layer_norm_eps
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.scan_backend = scan_backend
        self.inference_mode = inference_mode
        self.lean_threshold_frames = lean_threshold_frames
        self.clip_pooling = clip_pooling
        self.training_length_frames = training_length_frames
        self.frame_upsampling = frame_upsampling
        self.frame_skip_stages = list(frame_skip_stages) if frame_skip_stages is not None else []
        self.label_mids = label_mids
        super().__init__(**kwargs)
        self.auto_map = dict(AUTO_MAP)
        self._validate(embed_dim)

    def __setattr__(self, key, value):
        """Keep `label_mids` in step with `id2label` (which `num_labels` rewrites too): rebuilt by name when every
        new label is an old one, dropped otherwise."""
        if key != "id2label" or self.__dict__.get("label_mids") is None:
            return super().__setattr__(key, value)
        old_names = _label_names(self.__dict__.get("id2label"))
        super().__setattr__(key, value)
        mids = self.__dict__["label_mids"]
        if old_names is None or len(old_names) != len(mids):
            return None  # first assignment (in __init__), or already inconsistent: `_validate` judges it
        mid_of = dict(zip(old_names, mids))
        new_names = _label_names(self.__dict__.get("id2label")) or []
        rebuilt = [mid_of[name] for name in new_names] if all(name in mid_of for name in new_names) else None
        if rebuilt is None:
            logger.info("DassConfig: new labels %s are not all old ones; label_mids dropped.", new_names[:5])
        self.__dict__["label_mids"] = rebuilt
        return None

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """`PreTrainedConfig.from_dict`; a new label set given as keyword (`num_labels`, `id2label`) also resets a
        stored `problem_type` unless `problem_type` is given with it (see the class docstring)."""
        explicit_problem = "problem_type" in kwargs
        result = super().from_dict(config_dict, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        old_names = _label_names(config_dict.get("id2label"))
        if not explicit_problem and config.problem_type is not None and old_names is not None:
            if old_names != _label_names(config.id2label):
                logger.warning(
                    "DassConfig: new label set (%d labels, was %d): problem_type %r of the old head is reset, to be "
                    "inferred from the training labels; pass problem_type=... to set it.",
                    config.num_labels, len(old_names), config.problem_type,
                )
                config.problem_type = None
        return result

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedConfig.save_pretrained`, plus `dass_auto.py`, the module its `auto_map` names."""
        super().save_pretrained(save_directory, *args, **kwargs)
        write_auto_module(save_directory)

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoConfig"):
        """A no-op: `auto_map` is always written (see `auto_module.py`); transformers' default would copy this
        package's source files into saved folders."""

    @classmethod
    def small(cls, **kwargs) -> "DassConfig":
        """DASS-small: depths 2/2/8/2, drop path 0.2 (29.9M parameters)."""
        return cls(**{"depths": [2, 2, 8, 2], "drop_path_rate": 0.2, **kwargs})

    @classmethod
    def medium(cls, **kwargs) -> "DassConfig":
        """DASS-medium: depths 2/2/20/2, drop path 0.3 (48.6M parameters)."""
        return cls(**{"depths": [2, 2, 20, 2], "drop_path_rate": 0.3, **kwargs})

    @property
    def hidden_size(self) -> int:
        """Width of the pooled output (last stage)."""
        return self.dims[-1]

    @property
    def frames_per_step(self) -> int:
        """Input frames per time step of the last feature map: the patch embedding's `patch_size` times 2 per
        downsampling between stages (32 for DASS, 0.32 s at a 10 ms hop)."""
        return self.patch_size * 2 ** (len(self.dims) - 1)

    @property
    def fine_step_frames(self) -> int:
        """Input frames per step of `DassForAudioFrameClassification`'s logits: `frames_per_step //
        frame_upsampling` (4 = 40 ms by default)."""
        return self.frames_per_step // self.frame_upsampling

    def stage_step_frames(self, stage: int) -> int:
        """Input frames per time step of stage `stage`'s feature map: `patch_size` times 2 per downsampling
        before it (4, 8, 16, 32 for DASS's four stages)."""
        return self.patch_size * 2**stage

    @property
    def dt_ranks(self) -> list[int]:
        """The time-step rank R of each stage, with `"auto"` resolved."""
        if self.dt_rank == "auto":
            return [math.ceil(dim / 16) for dim in self.dims]
        if isinstance(self.dt_rank, int):
            return [self.dt_rank] * len(self.dims)
        return list(self.dt_rank)

    def _validate(self, embed_dim: int | None) -> None:
        def fail(message: str):
            raise ValueError(f"DassConfig: {message}")

        if len(self.dims) == 0 or len(self.dims) != len(self.depths):
            fail(f"`dims` {self.dims} and `depths` {self.depths} must be non-empty and of equal length (one per stage).")
        if any(d <= 0 for d in self.dims) or any(d < 0 for d in self.depths):
            fail(f"`dims` must be positive and `depths` non-negative, got dims={self.dims}, depths={self.depths}.")
        if embed_dim is not None and embed_dim != self.dims[0]:
            fail(f"`embed_dim`={embed_dim} disagrees with dims[0]={self.dims[0]}; give one of them.")
        if self.dims[0] % 2:
            fail(f"dims[0]={self.dims[0]} must be even: the patch embedding's first conv has dims[0] // 2 channels.")
        if not isinstance(self.d_state, int) or self.d_state < 1:
            fail(f"`d_state` must be a positive integer, got {self.d_state!r}.")
        if self.ssm_ratio <= 0 or any(int(self.ssm_ratio * d) < 1 for d in self.dims):
            fail(f"`ssm_ratio` must be positive and give at least one inner channel, got {self.ssm_ratio!r}.")
        if isinstance(self.dt_rank, str):
            if self.dt_rank != "auto":
                fail(f"`dt_rank` must be 'auto', an int or one int per stage, got {self.dt_rank!r}.")
        elif isinstance(self.dt_rank, int):
            if self.dt_rank < 1:
                fail(f"`dt_rank` must be >= 1, got {self.dt_rank}.")
        elif len(self.dt_rank) != len(self.dims) or any(int(r) < 1 for r in self.dt_rank):
            fail(f"`dt_rank` list {self.dt_rank} needs one positive int per stage ({len(self.dims)}).")
        if self.mlp_ratio < 0:
            fail(f"`mlp_ratio` must be >= 0 (0 disables the MLP), got {self.mlp_ratio}.")
        if self.ssm_conv < 1 or self.ssm_conv % 2 == 0:
            fail(f"`ssm_conv` must be a positive odd kernel size, got {self.ssm_conv}.")
        if self.patch_size < 2 or self.patch_size % 2:
            fail(f"`patch_size` must be an even integer >= 2, got {self.patch_size}.")
        if self.num_mel_bins < 1:
            fail(f"`num_mel_bins` must be positive, got {self.num_mel_bins}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            fail(f"`drop_path_rate` must be in [0, 1), got {self.drop_path_rate}.")
        if self.layer_norm_eps <= 0:
            fail(f"`layer_norm_eps` must be positive, got {self.layer_norm_eps}.")
        if self.scan_backend not in SCAN_BACKENDS:
            fail(f"`scan_backend` must be one of {SCAN_BACKENDS}, got {self.scan_backend!r}.")
        if self.inference_mode not in INFERENCE_MODES:
            fail(f"`inference_mode` must be one of {INFERENCE_MODES}, got {self.inference_mode!r}.")
        if isinstance(self.lean_threshold_frames, bool) or not isinstance(self.lean_threshold_frames, int) or (
            self.lean_threshold_frames < 1
        ):
            fail(f"`lean_threshold_frames` must be a positive integer, got {self.lean_threshold_frames!r}.")
        try:
            check_clip_pooling(self.clip_pooling, choices=CLIP_POOLING_CHOICES)
        except ValueError as error:
            fail(str(error))
        if isinstance(self.training_length_frames, bool) or not isinstance(self.training_length_frames, int) or (
            self.training_length_frames < 1
        ):
            fail(f"`training_length_frames` must be a positive integer, got {self.training_length_frames!r}.")
        divisors = [d for d in range(1, self.frames_per_step + 1) if self.frames_per_step % d == 0]
        if isinstance(self.frame_upsampling, bool) or not isinstance(self.frame_upsampling, int) or (
            self.frame_upsampling not in divisors
        ):
            fail(
                f"`frame_upsampling` must be a positive integer that divides the {self.frames_per_step} input frames "
                f"of a step (one of {divisors}), so that each frame-model step is whole frames; got "
                f"{self.frame_upsampling!r}."
            )
        skips = self.frame_skip_stages
        last = len(self.dims) - 1
        if any(isinstance(s, bool) or not isinstance(s, int) for s in skips) or sorted(set(skips)) != skips or (
            skips and not 0 <= skips[0] <= skips[-1] < last
        ):
            fail(
                f"`frame_skip_stages` must be distinct stage indices in increasing order, each below the last stage "
                f"({last}, whose scores they refine), got {skips!r}."
            )
        for stage in skips:
            if self.stage_step_frames(stage) % self.fine_step_frames:
                fail(
                    f"`frame_skip_stages`: stage {stage} has steps of {self.stage_step_frames(stage)} input frames, "
                    f"not a whole number of the frame model's {self.fine_step_frames}-frame steps; raise "
                    "`frame_upsampling` or drop the stage."
                )
        allowed_problems = (None, "regression", "single_label_classification", "multi_label_classification")
        if self.problem_type not in allowed_problems:
            fail(f"`problem_type` must be one of {allowed_problems}, got {self.problem_type!r}.")
        if self.label_mids is not None and len(self.label_mids) != self.num_labels:
            fail(f"`label_mids` has {len(self.label_mids)} entries for {self.num_labels} labels.")


def _label_names(id2label: dict | None) -> list[str] | None:
    """Label names in id order (JSON keys are strings), or None without labels."""
    if id2label is None:
        return None
    return [id2label[key] for key in sorted(id2label, key=int)]


__all__ = ["DassConfig"]
