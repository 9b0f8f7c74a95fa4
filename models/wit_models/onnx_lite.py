"""Builds the ONNX graph of an EfficientNet-Lite from its state dict, with onnx.helper only (no torch).

Batch norms are folded into the convolutions; TF "SAME" padding is ONNX ``auto_pad=SAME_UPPER``
(the extra padding pixel goes at the end, as in TensorFlow), which also keeps height and width dynamic
so the same file serves 224 px, 260 px and the seed's 64 px inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .lite import blocks_from_state, fold_bn
from .manifest import OPSET


class _Graph:
    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, outputs=None, **attrs):
        self._n += 1
        outputs = outputs or [f"{op.lower()}_{self._n}"]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{self._n}", **attrs))
        return outputs[0]

    def conv_bn(self, x, state, conv, bn, *, stride=1, groups=1, act=True):
        w, b = fold_bn(state, conv, bn)
        wn = self.const(conv + ".weight", w)
        bname = self.const(conv + ".bias", b)
        y = self.node(
            "Conv",
            [x, wn, bname],
            kernel_shape=list(w.shape[2:]),
            strides=[stride, stride],
            group=groups,
            auto_pad="SAME_UPPER",
        )
        if act:
            y = self.node("Clip", [y, "relu6_min", "relu6_max"])
        return y


def build_lite_onnx(state, *, mean, std, name: str) -> onnx.ModelProto:
    """The ONNX model: uint8 NHWC ``pixels`` in; ``embedding``, ``logits``, ``feature_map`` out."""
    g = _Graph()
    g.const("relu6_min", np.array(0.0, np.float32))
    g.const("relu6_max", np.array(6.0, np.float32))
    g.const("mean", np.array(mean, np.float32).reshape(1, 1, 1, 3))
    g.const("std", np.array(std, np.float32).reshape(1, 1, 1, 3))

    x = g.node("Cast", ["pixels"], to=TensorProto.FLOAT)
    x = g.node("Sub", [x, "mean"])
    x = g.node("Div", [x, "std"])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    x = g.conv_bn(x, state, "_conv_stem", "_bn0", stride=2)
    for blk in blocks_from_state(state):
        p = blk.prefix
        inp = x
        if blk.expand:
            x = g.conv_bn(x, state, p + "_expand_conv", p + "_bn0")
        channels = state[p + "_depthwise_conv.weight"].shape[0]
        x = g.conv_bn(x, state, p + "_depthwise_conv", p + "_bn1", stride=blk.stride, groups=channels)
        x = g.conv_bn(x, state, p + "_project_conv", p + "_bn2", act=False)
        if blk.residual:
            x = g.node("Add", [x, inp])
    g.conv_bn(x, state, "_conv_head", "_bn1")
    # Rename the head activation to the public feature_map output.
    g.nodes[-1].output[0] = "feature_map"
    pooled = g.node("GlobalAveragePool", ["feature_map"])
    g.node("Flatten", [pooled], ["embedding"], axis=1)
    g.const("_fc.weight", state["_fc.weight"].astype(np.float32))
    g.const("_fc.bias", state["_fc.bias"].astype(np.float32))
    g.node("Gemm", ["embedding", "_fc.weight", "_fc.bias"], ["logits"], transB=1)

    dim = state["_conv_head.weight"].shape[0]
    classes = state["_fc.weight"].shape[0]
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", "height", "width", 3])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("feature_map", TensorProto.FLOAT, ["batch", dim, "fh", "fw"]),
        ],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="wiki-image-topics")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
