"""int8 on CPU: the backbone's `nn.Linear` layers with int8 weights and activations quantised at run time.

Two routes to the same format, chosen by name (`INT8_ROUTES`):

- "dynamic": `torch.ao.quantization.quantize_dynamic` (fbgemm's / oneDNN's int8 kernels, VNNI where the CPU has it):
  weights int8 per output channel, activations quantised per tensor at each call. Deprecated in torch 2.10+ in
  favour of torchao, still shipped and working in torch 2.13; it needs no extra package.
- "torchao": torchao's `quantize_(model, Int8DynamicActivationInt8WeightConfig())`: weights int8 per output row,
  activations per token (finer than per tensor, so more accurate), the layers stay `nn.Linear` whose weight is a
  torchao `Int8Tensor`. The same format transformers' `TorchAoConfig` route gives on `from_pretrained`. torchao
  is the `[int8]` extra, imported only here, when asked for.

`DEFAULT_INT8_ROUTE` is what `--dtype int8` takes: the faster on CPU, measured side by side in BENCHMARKS.md
("int8: torch.ao's dynamic quantisation or torchao"). Where torch no longer ships the dynamic route, int8 takes torchao.
The classifier stays float32 (one row per clip: nothing to gain, and float32 logits), as do the parameters a DASS
model keeps in float32 (`_keep_in_fp32_modules_strict`).
"""

from __future__ import annotations

import copy
import re
import warnings

import torch
from torch import nn

from ..utils.optional import require

INT8_ROUTES = ("dynamic", "torchao")
# Measured in BENCHMARKS.md: torchao's int8 linears run without a fused CPU kernel unless torch.compile'd, and were
# slower than float32 here; torch.ao's dynamic linears were the faster int8.
DEFAULT_INT8_ROUTE = "dynamic"

__all__ = ["DEFAULT_INT8_ROUTE", "INT8_ROUTES", "default_int8_route", "keeps_float32", "quantize_int8"]


def keeps_float32(model: nn.Module, name: str) -> bool:
    """Whether parameter `name` belongs to one of the model's `_keep_in_fp32_modules_strict` (a module or parameter
    name, as a whole component of the dotted name)."""
    names = getattr(model, "_keep_in_fp32_modules_strict", None) or ()
    return any(re.search(rf"(?:^|\.){re.escape(kept)}(?:\.|$)", name) for kept in names)


def backbone_linears(model: nn.Module) -> list[str]:
    """Names of the `nn.Linear` modules int8 quantises: all but those the model keeps in float32 (the classifier)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not keeps_float32(model, name + ".weight")
    ]


def _dynamic_available() -> bool:
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return True


def default_int8_route() -> str:
    """`DEFAULT_INT8_ROUTE`, or "torchao" where this torch no longer has `quantize_dynamic`."""
    return DEFAULT_INT8_ROUTE if _dynamic_available() else "torchao"


def quantize_int8(model: nn.Module, route: str | None = None) -> nn.Module:
    """A copy of `model` (float32, eval mode) with its backbone linears in int8 by `route` (None: the default).

    Raises:
        ValueError: an unknown route.
        ModuleNotFoundError: route "torchao" without torchao installed (the message names the `[int8]` extra).
        RuntimeError: route "dynamic" on a torch without eager quantisation or without an int8 CPU engine.
    """
    route = default_int8_route() if route is None else route
    if route not in INT8_ROUTES:
        raise ValueError(f"int8 route must be one of {INT8_ROUTES}, got {route!r}")
    if route == "torchao":
        return _torchao_int8(copy.deepcopy(model))
    return _dynamic_int8(model)


def _torchao_int8(model: nn.Module) -> nn.Module:
    """torchao's `quantize_` of the backbone linears, in place (the caller passes a copy)."""
    require("torchao", "int8", "int8 through torchao", alternative="or take the route 'dynamic' of torch.ao")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    chosen = set(backbone_linears(model))
    # set_inductor_config=False: the model is not compiled here; leave torch._inductor's global settings alone.
    config = Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    quantize_(model, config, filter_fn=lambda module, name: isinstance(module, nn.Linear) and name in chosen)
    return model


def _dynamic_int8(model: nn.Module) -> nn.Module:
    """`torch.ao.quantization.quantize_dynamic` of the backbone linears (returns a copy)."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as error:  # a torch without eager-mode quantisation
        raise RuntimeError(
            f"int8 route 'dynamic' needs torch.ao.quantization.quantize_dynamic, missing from torch {torch.__version__}: "
            f"{error}. Take the route 'torchao' (pip install \"transformers-dass[int8]\"), or --dtype bfloat16 / float32."
        ) from error
    engines = torch.backends.quantized.supported_engines
    engine = "fbgemm" if "fbgemm" in engines else "onednn" if "onednn" in engines else None
    if engine is None:
        raise RuntimeError(f"this torch build has no int8 CPU engine (supported: {engines}); use --dtype bfloat16 or float32.")
    torch.backends.quantized.engine = engine
    qconfigs = dict.fromkeys(backbone_linears(model), per_channel_dynamic_qconfig)
    with warnings.catch_warnings():
        # torch 2.10+ announces the move of eager quantisation to torchao on every call; the API still works.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated")
        return quantize_dynamic(model, qconfigs, dtype=torch.qint8, inplace=False)
