"""Turn an exported emolens ONNX model back into a checkpoint that `emolens train --init` fine-tunes.

    python scripts/onnx_to_checkpoint.py MODEL.onnx --model vgg_s --data ../shared/datasets/fer2013 --out CKPT.pt

How the folded BatchNorms are rebuilt: emolens/training/from_onnx.py (`emolens train --init MODEL.onnx` does the
same without keeping the file). A quantized model is made float first, its 8-bit values kept. Prints the
parity with the ONNX model (the largest difference of any class probability on 140 val faces, eval mode); OUT
must not exist. An int8
model (or one made float from an int8 one, with its activation ranges as Clip nodes) quantizes activations the
network itself does not, so there the parity is not exact (the vgg_m member: 98.3% of val faces get the same label, and
the same accuracy, 68.57%); the exit code is 1 only when a float model without such clips differs.
"""

from __future__ import annotations

import argparse
import sys

from emolens.training.from_onnx import save_checkpoint_from_onnx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx")
    ap.add_argument("--model", required=True, help="the architecture's name in the registry (emolens models)")
    ap.add_argument("--data", required=True, help="the training data (BatchNorm statistics, parity check)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-class", type=int, default=100, help="training faces per class for the statistics")
    args = ap.parse_args()
    try:
        out, diff = save_checkpoint_from_onnx(args.onnx, args.model, args.data, args.out, per_class=args.per_class)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"onnx_to_checkpoint.py: error: {e}", file=sys.stderr)
        return 2
    import onnx

    from emolens.training.dequantize import is_quantized

    proto = onnx.load(args.onnx)
    clips = sum(n.op_type == "Clip" for n in proto.graph.node)
    int8 = is_quantized(proto)
    print(f"wrote {out}; parity with {args.onnx}: max |p_ckpt - p_onnx| = {diff:.2e}"
          + (" (an int8 model: its quantized activations are not in the checkpoint)" if int8 else "")
          + (f" ({clips} activation clips of an int8 model are not in the checkpoint)" if clips else ""))
    return 0 if diff < 1e-4 or clips or int8 else 1


if __name__ == "__main__":
    sys.exit(main())
