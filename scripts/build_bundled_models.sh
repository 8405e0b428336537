#!/usr/bin/env bash
# Build the bundled models from the kept weights, as shipped in 0.2 (issue 34):
#   1. default = models/checkpoints/distil_vgg_m.pt, fast = models/checkpoints/distil_vgg_xs.pt: the two students
#      that scripts/gpu_distil.py distilled on a lent GPU from four members (FER+ votes, half votes half label with
#      the real faces of wild/train, FER2013 labels, a vgg_m from scratch); each exported to int8, face + mirror;
#   2. each through scripts/ship_model.py: the temperature fitted on FER2013 val (no class bias: see the model
#      card), the val and wild val figures stored, named. Copy the results into src/emolens/assets/ to ship them.
#   bash scripts/build_bundled_models.sh [OUT_DIR]     (needs: pip install '.[train]'; about 15 min on 2 cores)
# The teacher's soft labels the students learned from are kept in models/labels/labels_distil.csv.gz.
set -euo pipefail
OUT=${1:-runs/bundled}
FER=${FER:-../shared/datasets/fer2013}
mkdir -p "$OUT"
for n in distil_vgg_m distil_vgg_xs; do
  emolens export "models/checkpoints/$n.pt" --tta-hflip --tta-scales 1.0 --int8 --data "$FER" --out "$OUT/$n.onnx" --force
done
rm -f "$OUT"/emolens-*.onnx
python scripts/ship_model.py "$OUT/distil_vgg_m.int8.onnx" --name emolens-distil-vgg-m-int8 \
  --out "$OUT/emolens-distil-vgg-m-int8.onnx"
python scripts/ship_model.py "$OUT/distil_vgg_xs.int8.onnx" --name emolens-distil-vgg-xs-int8 \
  --out "$OUT/emolens-distil-vgg-xs-int8.onnx"
