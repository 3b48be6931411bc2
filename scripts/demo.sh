#!/usr/bin/env bash
# The main job on the embedded default data: generate the shapes data set, train the small Mask R-CNN on the
# CPU, evaluate it, export it to ONNX (both flavors, verified against PyTorch), benchmark ONNX Runtime against
# PyTorch, and check COCO accuracy of the ONNX model against the PyTorch one.
# Everything lands in output/shapes_mask_rcnn_R_18_FPN/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CONFIG=configs/shapes_mask_rcnn_R_18_FPN.yaml
OUT=output/shapes_mask_rcnn_R_18_FPN
WEIGHTS=$OUT/model_final.pth

$PY -m trainer make-shapes --output datasets/shapes
$PY -m trainer train --config-file "$CONFIG" OUTPUT_DIR "$OUT"
for flavor in ort trt; do
  $PY -m exporter --to onnx --simplify --flavor "$flavor" --verify 6 \
    --weights "$WEIGHTS" --output "$OUT/model_$flavor.onnx"
done
$PY -m runtime.bench --model "$WEIGHTS" --model "$OUT/model_ort.onnx" --images datasets/shapes/val \
  --warmup 5 --iters 50 --threads 2 --json "$OUT/bench.json" --plot "$OUT/bench.png"
for flavor in ort trt; do
  $PY -m runtime.evaluate --model "$OUT/model_$flavor.onnx" --reference "$WEIGHTS" --dataset shapes_val \
    --max-ap-drop 0.1 --json "$OUT/evaluate_$flavor.json" --plot "$OUT/pr_$flavor.png" \
    --disagreements "$OUT/disagreements_$flavor.png"
done
echo "done: see $OUT (bench.png, pr_*.png, disagreements_*.png, *.json)"
