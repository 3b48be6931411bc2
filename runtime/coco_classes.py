"""COCO's category names indexed by torchvision's label ids.

torchvision's published COCO detectors predict 91 labels (the original 90 COCO ids plus background, with
gaps where COCO retired categories), so a plain torchvision state dict carries no names: this list is what
its exported models and engines record. Index 0 is the background; "N/A" marks retired ids.
"""

from __future__ import annotations

COCO_TORCHVISION_CLASSES: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A",
    "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

#: COCO person keypoints, in the order torchvision's Keypoint R-CNN predicts them
COCO_PERSON_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

assert len(COCO_TORCHVISION_CLASSES) == 91

#: the 80 COCO categories with contiguous ids 1..80 and the background at 0, the layout of maskrcnn-benchmark's
#: and detectron2's COCO models (detectron2's 0-based classes are imported shifted by one)
COCO_CONTIGUOUS_CLASSES: tuple[str, ...] = tuple(c for c in COCO_TORCHVISION_CLASSES if c != "N/A")
assert len(COCO_CONTIGUOUS_CLASSES) == 81
