#!/usr/bin/env bash
# Build the three bundled models (default, fast, accurate) from the kept weights, as shipped (issue 18):
#   1. quantize the two real-photo fine-tunes (models/checkpoints/vgg_m_wild.pt, vgg_s_wild_sqrt.pt) to int8;
#   2. default  = their ensemble with member B's int8 copy, each face and its mirror image;
#      fast     = the vgg_s fine-tune alone, int8, face + mirror;
#      accurate = default's three nets + the FER-only vgg_m and vgg_s_ema members, four views;
#   3. each through scripts/ship_model.py: the temperature fitted on FER2013 val (no class bias: see the
#      model card), the val and wild val figures stored, named. Copy the results into src/emolens/assets/ to ship them.
#   bash scripts/build_bundled_models.sh [OUT_DIR]     (needs: pip install '.[train]'; about 15 min on 2 cores)
set -euo pipefail
OUT=${1:-runs/bundled}
FER=${FER:-../shared/datasets/fer2013}
mkdir -p "$OUT"
for n in vgg_m_wild vgg_s_wild_sqrt; do
  emolens export "models/checkpoints/$n.pt" --tta-hflip --tta-scales 1.0 --int8 --data "$FER" --out "$OUT/$n.onnx" --force
done
M="$OUT/vgg_m_wild.int8.onnx" Q="$OUT/vgg_s_wild_sqrt.int8.onnx" B=models/members/emolens-fer-vgg-s-int8.onnx
emolens export "$M" "$Q" "$B" --tta-hflip --tta-scales 1.0 --out "$OUT/default.raw.onnx" --force
emolens export "$M" "$Q" "$B" models/members/fer2013_vgg_m.int8.onnx models/members/fer2013_vgg_s_ema.int8.onnx \
  --tta-hflip --tta-scales 1.0 1.1 --out "$OUT/accurate.raw.onnx" --force
rm -f "$OUT"/emolens-*.onnx
python scripts/ship_model.py "$OUT/default.raw.onnx" --name emolens-wild-ens3-int8 \
  --out "$OUT/emolens-wild-ens3-int8.onnx"
python scripts/ship_model.py "$Q" --name emolens-wild-vgg-s-int8 --out "$OUT/emolens-wild-vgg-s-int8.onnx"
python scripts/ship_model.py "$OUT/accurate.raw.onnx" --name emolens-ens5-int8 \
  --out "$OUT/emolens-ens5-int8.onnx"
