"""Turn a QDQ int8 ONNX model back into a float one (for re-quantizing an int8 file whose float source is gone).

    python scripts/dequantize_qdq.py IN.int8.onnx OUT.onnx

Each weight or bias stored as an integer tensor behind a DequantizeLinear becomes the float tensor
that node computes, and each QuantizeLinear -> DequantizeLinear pair on an activation becomes the Clip
to its range (the quantizer folds a Relu into a range that starts at zero), so the float model computes
what the int8 one means (its weights keep their 8-bit values). The emolens metadata is copied;
`emolens export OUT.onnx --int8 ...` then quantizes it again. OUT must not exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from emolens.training.dequantize import dequantize


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = Path(argv[0]), Path(argv[1])
    if out.exists():
        print(f"dequantize_qdq.py: {out} already exists; choose another name", file=sys.stderr)
        return 2
    try:
        model = dequantize(onnx.load(str(src)))
        onnx.checker.check_model(model)
    except (OSError, ValueError, KeyError, DecodeError, onnx.checker.ValidationError) as e:
        print(f"dequantize_qdq.py: {src}: not a QDQ ONNX model this script can read ({e})", file=sys.stderr)
        return 2
    onnx.save(model, str(out))
    print(f"wrote {out} (float, from {src})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
