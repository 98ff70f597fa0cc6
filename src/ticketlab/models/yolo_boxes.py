"""YOLOv4's box parametrisation: raw head outputs (tx, ty, tw, th) ↔ boxes in input pixels.

For a prediction in grid cell (cx, cy) of a stride-s map, with anchor (pw, ph) and grid sensitivity
k (darknet's scale_x_y; YOLOv4 §3.4 "eliminate grid sensitivity"):
  bx = (k·σ(tx) − (k − 1)/2 + cx) · s      bw = pw · exp(tw)
  by = (k·σ(ty) − (k − 1)/2 + cy) · s      bh = ph · exp(th)
returned as (x1, y1, x2, y2). `encode` is the exact inverse for a centre strictly inside the span
the cell can reach, so a box the assigner gives a cell can be written as that cell's perfect output.
tw, th are clipped at log(1000/16) before exp, as torchvision's BoxCoder does, so an untrained head
cannot overflow.
"""

from __future__ import annotations

import math

import torch

# YOLOv4's anchors (yolov4.cfg, COCO, input 608), 3 per stride 8, 16, 32, as (w, h) in pixels.
YOLOV4_ANCHORS_608 = ((12, 16), (19, 36), (40, 28), (36, 75), (76, 55), (72, 146),
                      (142, 110), (192, 243), (459, 401))
ANCHOR_SIZE = 608
STRIDES = (8, 16, 32)
WH_CLIP = math.log(1000.0 / 16)
EPS = 1e-6


def default_anchors(input_size: int) -> torch.Tensor:
    """YOLOv4's anchors scaled from 608 px to `input_size`, shape (3 strides, 3 anchors, 2)."""
    return torch.tensor(YOLOV4_ANCHORS_608, dtype=torch.float32).view(3, 3, 2) * (input_size / ANCHOR_SIZE)


def cell_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H, W, 2): each cell's (column, row) index."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys), dim=-1)


class YoloBoxCoder:
    """Decode/encode for one stride with grid sensitivity `scale_xy` (1.0 = YOLOv3's plain sigmoid)."""

    def __init__(self, stride: int, scale_xy: float = 1.0) -> None:
        self.stride = stride
        self.scale_xy = scale_xy

    def decode(self, raw: torch.Tensor, cells: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """raw (…, 4) tx, ty, tw, th; cells (…, 2) and anchors (…, 2) broadcast to it → xyxy (…, 4)."""
        k = self.scale_xy
        centre = (k * raw[..., :2].sigmoid() - (k - 1) / 2 + cells) * self.stride
        size = anchors * raw[..., 2:4].clamp(max=WH_CLIP).exp()
        return torch.cat((centre - size / 2, centre + size / 2), dim=-1)

    def encode(self, boxes: torch.Tensor, cells: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """xyxy (…, 4) → the raw (tx, ty, tw, th) that `decode` turns back into them."""
        k = self.scale_xy
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        size = boxes[..., 2:] - boxes[..., :2]
        offset = ((centre / self.stride - cells + (k - 1) / 2) / k).clamp(EPS, 1 - EPS)
        return torch.cat((torch.logit(offset), torch.log(size / anchors)), dim=-1)
