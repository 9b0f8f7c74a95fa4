"""An independent numpy forward pass of EfficientNet-Lite, the yardstick for the ONNX conversion.

It shares nothing with the ONNX builder but the weight loader and the block list: batch norm is
applied as batch norm (not folded), TF "SAME" padding is computed from its definition, and
convolutions are sums of shifted slices, in float64.
"""

from __future__ import annotations

import numpy as np

from .lite import BN_EPS, blocks_from_state


def _same_pad(x, k, s):
    """TF 'SAME': out = ceil(in / s); total padding split with the extra pixel at the end."""
    _, _, h, w = x.shape
    pads = []
    for size in (h, w):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))


def _conv(x, w, stride, groups):
    """Convolution as a sum over kernel offsets; ``groups`` is 1 (dense) or C (depthwise)."""
    k = w.shape[-1]
    xp = _same_pad(x, k, stride)
    n, c, h, wd = x.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    out = np.zeros((n, w.shape[0], oh, ow))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            if groups == 1:
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j], optimize=True)
            else:
                out += patch * w[:, 0, i, j].reshape(1, -1, 1, 1)
    return out


def _bn(x, state, name):
    g, b = state[name + ".weight"], state[name + ".bias"]
    m, v = state[name + ".running_mean"], state[name + ".running_var"]
    shape = (1, -1, 1, 1)
    return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + BN_EPS) * g.reshape(shape) + b.reshape(shape)


def _relu6(x):
    return np.clip(x, 0.0, 6.0)


def forward(state, pixels_nhwc_uint8, mean, std):
    """Returns (embedding, logits, feature_map) for uint8 NHWC RGB pixels."""
    st = {k: v.astype(np.float64) for k, v in state.items() if v.dtype.kind == "f"}
    x = (pixels_nhwc_uint8.astype(np.float64) - np.asarray(mean)) / np.asarray(std)
    x = x.transpose(0, 3, 1, 2)
    x = _relu6(_bn(_conv(x, st["_conv_stem.weight"], 2, 1), st, "_bn0"))
    for blk in blocks_from_state(state):
        p, inp = blk.prefix, x
        if blk.expand:
            x = _relu6(_bn(_conv(x, st[p + "_expand_conv.weight"], 1, 1), st, p + "_bn0"))
        x = _relu6(_bn(_conv(x, st[p + "_depthwise_conv.weight"], blk.stride, x.shape[1]), st, p + "_bn1"))
        x = _bn(_conv(x, st[p + "_project_conv.weight"], 1, 1), st, p + "_bn2")
        if blk.residual:
            x = x + inp
    fmap = _relu6(_bn(_conv(x, st["_conv_head.weight"], 1, 1), st, "_bn1"))
    emb = fmap.mean(axis=(2, 3))
    logits = emb @ st["_fc.weight"].T + st["_fc.bias"]
    return emb, logits, fmap
