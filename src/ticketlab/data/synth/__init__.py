"""Synthetic COCO-format scenes that exercise detection, instance masks and keypoints offline.

`generate_synthetic(out_dir, SynthConfig(...))` writes train/val json + PNG images; see
`generate.py` for the file layout and `scene.py` for what the annotations mean. The same scenes'
VOC-style semantic masks (`semantic.py`) make the directory a `voc_seg` dataset too.
"""

from ticketlab.data.synth.config import ALL_CLASSES, PERSON, SHAPES, SIZE_RANGES, SynthConfig
from ticketlab.data.synth.generate import categories, generate_synthetic
from ticketlab.data.synth.scene import size_range
from ticketlab.data.synth.shapes import KEYPOINT_NAMES, SKELETON

__all__ = ["ALL_CLASSES", "KEYPOINT_NAMES", "PERSON", "SHAPES", "SIZE_RANGES", "SKELETON", "SynthConfig",
           "categories", "generate_synthetic", "size_range"]
