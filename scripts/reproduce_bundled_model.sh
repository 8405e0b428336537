#!/usr/bin/env bash
# Rebuild member B from scratch, the bundled model of before (models/members/emolens-fer-vgg-s.onnx; its int8 copy
# is in today's default and accurate ensembles: scripts/build_bundled_models.sh). Needs: pip install '.[train]'.
#   1. train vgg_s on FER2013 train for 30 epochs (warm-up + cosine), keeping the best val epoch;
#   2. a second 15-epoch cosine cycle starting from those weights (a warm restart);
#   3. export with test-time augmentation (mirror image, and a 1.1x wider crop), measure it on val
#      through ONNX Runtime, and store the measured metrics in the model.
#   bash scripts/reproduce_bundled_model.sh [DATA]
set -euo pipefail
DATA=${1:-../shared/datasets/fer2013}
RUN=runs/fer2013_vgg_s_restart
emolens train --config configs/fer2013_vgg_s.json --data "$DATA"
emolens train --config configs/fer2013_vgg_s_restart.json --data "$DATA"
TTA=(--tta-hflip --tta-scales 1.0 1.1 --name emolens-fer-vgg-s)
emolens export "$RUN" "${TTA[@]}" --out "$RUN/bundle.onnx" --force
emolens evaluate "$RUN/bundle.onnx" --data "$DATA" --split val --out "$RUN/eval"
emolens export "$RUN" "${TTA[@]}" --metrics "$RUN/eval/report.json" --out models/members/emolens-fer-vgg-s.onnx --force
