"""A QDQ int8 ONNX model back into a float one that means the same.

Each weight or bias stored as an integer tensor behind a DequantizeLinear becomes the float tensor that node
computes, and each QuantizeLinear -> DequantizeLinear pair on an activation becomes the Clip to its range (the
quantizer folds a Relu into a range that starts at zero), so the float model computes what the int8 one means
(its weights keep their 8-bit values). Used to re-quantize an int8 file whose float source is gone
(``scripts/dequantize_qdq.py``) and to fine-tune from an int8 model (``emolens train --init fast``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("DequantizeLinear", "QLinearConv", "ConvInteger") for n in model.graph.node)


def dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    drop = []
    clips = []
    new_inits = []
    for n in g.node:
        if n.op_type != "DequantizeLinear":
            continue
        x = n.input[0]
        if x in inits:  # a stored weight / bias
            q = numpy_helper.to_array(inits[x]).astype(np.float64)
            scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale, zp = scale.reshape(shape), np.reshape(zp, shape) if np.ndim(zp) else zp
            new_inits.append(numpy_helper.from_array(((q - zp) * scale).astype(np.float32), n.output[0]))
            drop.append(n)
        elif x in producer and producer[x].op_type == "QuantizeLinear":  # an activation's Q -> DQ pair
            # becomes the clamp it applies: the quantizer folds a Relu into a range that starts at zero
            q = producer[x]
            scale = float(numpy_helper.to_array(inits[q.input[1]]))
            zp_t = inits[q.input[2]]
            zp = float(numpy_helper.to_array(zp_t))
            info = np.iinfo(onnx.helper.tensor_dtype_to_np_dtype(zp_t.data_type))
            lo, hi = n.output[0] + "_clip_min", n.output[0] + "_clip_max"
            new_inits += [numpy_helper.from_array(np.array((info.min - zp) * scale, np.float32), lo),
                          numpy_helper.from_array(np.array((info.max - zp) * scale, np.float32), hi)]
            clips.append(onnx.helper.make_node("Clip", [q.input[0], lo, hi], [n.output[0]]))
            drop += [n, q]
    for n in drop:
        if n in g.node:
            g.node.remove(n)
    g.node.extend(clips)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    _topological_sort(g)
    return model


def _topological_sort(g: onnx.GraphProto) -> None:
    """Reorder the nodes so that each comes after the nodes whose outputs it reads (ONNX requires it)."""
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    todo, order = list(g.node), []
    while todo:
        rest = []
        for n in todo:
            if all(i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(todo):
            raise ValueError("the graph has a cycle or reads an undefined tensor")
        todo = rest
    del g.node[:]
    g.node.extend(order)
