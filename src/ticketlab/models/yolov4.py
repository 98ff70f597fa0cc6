"""YOLOv4 (Bochkovskiy et al. 2020) on a torchvision ResNet, paper 002's main detector.

Architecture, as yolov4.cfg lays it out, with CSPDarknet53 replaced by the ResNet (paper 002 §3:
"YOLOv4 … take ResNet-50 as the backbone"): layer2, layer3, layer4 (strides 8, 16, 32) feed
  neck.spp_*   three convs, SPP (max-pools 5, 9, 13 concatenated with their input), three convs
  neck.*4/*3   PAN top-down: 1×1 conv + ×2 upsample, concatenated with a 1×1 lateral, five convs
  neck.bu*     PAN bottom-up: 3×3 stride-2 conv, concatenated, five convs
  head.{0,1,2} a 3×3 conv and a 1×1 conv to 3 anchors × (4 box + 1 objectness + K classes) per stride.
Neck convs are conv + BatchNorm + LeakyReLU(0.1), widths neck_channels · (1/4, 1/2, 1) per stride
(YOLOv4: 128, 256, 512). `neck_norm: groupnorm` puts GroupNorm (16 channels a group) in place of every
neck and head BatchNorm: on small inputs (96 px: a 3×3 stride-32 map, 72 positions per channel in a
batch of 8, where the paper's 416–608 px give 1,352 or more) BatchNorm's batch statistics part from its
running ones and the detector scores far worse in eval mode than it trains (docs/detection002.md).
The loss is `models/yolo_loss.py` (CIoU), boxes `models/yolo_boxes.py`.

Interface: torchvision's detectors' — `model(images, targets)` in train mode returns the loss terms,
`model(images)` in eval mode a list of {boxes, labels, scores} in each image's own coordinates —
through torchvision's GeneralizedRCNNTransform: the longer side is resized to `input_size` (aspect
kept, as darknet's letterbox; padding is at the bottom/right, to a multiple of 32) and the image is
normalised with ImageNet's mean and std, what a pretrained ResNet expects.

Inference: score = σ(objectness) · σ(class) for every (box, class) pair above score_thresh, boxes
clipped to the image, class-wise NMS (torchvision.ops.batched_nms), the best detections_per_img kept.

Not reproduced from YOLOv4's bag of freebies/specials (paper 002 names no detail; its data pipeline
here is the shared one, horizontal flip only): Mosaic / CutMix / self-adversarial augmentation,
multi-scale training, CmBN, DropBlock, Mish, DIoU-NMS, the cosine-annealed lr is `train.schedule`.
The objectness and class biases start at a 1% prior (log(0.01/0.99)), so the first steps are not
dominated by the no-object loss of thousands of cells.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import batched_nms, clip_boxes_to_image

from ticketlab.config import ModelConfig, YoloConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet_keys import load_model_weights
from ticketlab.models.resnet_trunk import BACKBONES, DEFAULT_SCOPE, detector_classes, resnet_body, trunk_groups
from ticketlab.models.spec import BOX_DETECTOR, BuiltModel, ModelFamily
from ticketlab.models.yolo_boxes import STRIDES, YoloBoxCoder, cell_grid, default_anchors
from ticketlab.models.yolo_loss import YoloLoss
from ticketlab.registry import MODEL_FAMILIES

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
ANCHORS_PER_STRIDE = 3
PRIOR = 0.01
PRE_NMS_TOP_N = 1000


GROUP_CHANNELS = 16  # channels per GroupNorm group (neck_norm: groupnorm)
Norm = Callable[[int], nn.Module]


def neck_norm(name: str) -> Norm:
    """The norm layer of every neck and head conv, for `model.yolo.neck_norm` (its choices are checked)."""
    if name == "groupnorm":
        return lambda c: nn.GroupNorm(max(1, c // GROUP_CHANNELS), c)
    return nn.BatchNorm2d


class ConvNorm(nn.Sequential):
    """conv (no bias) + norm + LeakyReLU(0.1): darknet's `[convolutional] batch_normalize=1 leaky`."""

    def __init__(self, cin: int, cout: int, norm: Norm, kernel: int = 1, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), norm(cout),
                         nn.LeakyReLU(0.1, inplace=True))


def five_convs(cin: int, c: int, norm: Norm) -> nn.Sequential:
    """1×1, 3×3, 1×1, 3×3, 1×1 alternating c and 2c channels (each PAN stage of yolov4.cfg)."""
    return nn.Sequential(ConvNorm(cin, c, norm), ConvNorm(c, 2 * c, norm, 3), ConvNorm(2 * c, c, norm),
                         ConvNorm(c, 2 * c, norm, 3), ConvNorm(2 * c, c, norm))


class SPP(nn.Module):
    """Spatial pyramid pooling: stride-1 max-pools of 13, 9, 5 concatenated with the input (4× channels)."""

    def __init__(self, sizes: Sequence[int] = (13, 9, 5)) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([*(p(x) for p in self.pools), x], dim=1)


class YoloNeck(nn.Module):
    """SPP on the stride-32 features, then PAN; returns the stride 8, 16, 32 maps (w/4, w/2, w channels)."""

    def __init__(self, in_channels: Sequence[int], width: int, norm: Norm) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        w5, w4, w3 = width, width // 2, width // 4

        def three(cin: int) -> nn.Sequential:
            return nn.Sequential(ConvNorm(cin, w5, norm), ConvNorm(w5, 2 * w5, norm, 3), ConvNorm(2 * w5, w5, norm))

        self.spp_in, self.spp, self.spp_out = three(c5), SPP(), three(4 * w5)
        self.up5, self.lat4, self.td4 = ConvNorm(w5, w4, norm), ConvNorm(c4, w4, norm), five_convs(2 * w4, w4, norm)
        self.up4, self.lat3, self.td3 = ConvNorm(w4, w3, norm), ConvNorm(c3, w3, norm), five_convs(2 * w3, w3, norm)
        self.down3, self.bu4 = ConvNorm(w3, w4, norm, 3, 2), five_convs(2 * w4, w4, norm)
        self.down4, self.bu5 = ConvNorm(w4, w5, norm, 3, 2), five_convs(2 * w5, w5, norm)
        self.out_channels = [w3, w4, w5]

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> list[torch.Tensor]:
        p5 = self.spp_out(self.spp(self.spp_in(c5)))
        p4 = self.td4(torch.cat((self.lat4(c4), F.interpolate(self.up5(p5), size=c4.shape[-2:])), dim=1))
        n3 = self.td3(torch.cat((self.lat3(c3), F.interpolate(self.up4(p4), size=c3.shape[-2:])), dim=1))
        n4 = self.bu4(torch.cat((self.down3(n3), p4), dim=1))
        n5 = self.bu5(torch.cat((self.down4(n4), p5), dim=1))
        return [n3, n4, n5]


def yolo_head(channels: int, num_classes: int, norm: Norm) -> nn.Sequential:
    """3×3 conv (2× channels) then the 1×1 prediction conv, its objectness and class biases at the prior."""
    pred = nn.Conv2d(2 * channels, ANCHORS_PER_STRIDE * (5 + num_classes), 1)
    with torch.no_grad():
        bias = pred.bias.view(ANCHORS_PER_STRIDE, 5 + num_classes)
        bias.zero_()
        bias[:, 4:] = math.log(PRIOR / (1 - PRIOR))
    return nn.Sequential(ConvNorm(channels, 2 * channels, norm, 3), pred)


class YOLOv4(nn.Module):
    """ResNet → SPP + PAN neck → three YOLO heads, with torchvision's detector interface."""

    def __init__(self, body: nn.Module, trunk_channels: Sequence[int], num_classes: int, cfg: YoloConfig,
                 input_size: int, anchors: torch.Tensor) -> None:
        super().__init__()
        self.num_classes = num_classes  # foreground classes K (labels 1 … K)
        self.cfg = cfg
        self.transform = GeneralizedRCNNTransform(input_size, input_size, IMAGENET_MEAN, IMAGENET_STD,
                                                  size_divisible=max(STRIDES))
        self.backbone = nn.ModuleDict({"body": body})
        norm = neck_norm(cfg.neck_norm)
        self.neck = YoloNeck(trunk_channels[1:], cfg.neck_channels, norm)
        self.head = nn.ModuleList(yolo_head(c, num_classes, norm) for c in self.neck.out_channels)
        self.register_buffer("anchors", anchors, persistent=False)
        self.coders = [YoloBoxCoder(s, k) for s, k in zip(STRIDES, cfg.scale_xy)]
        self.loss = YoloLoss(cfg, num_classes, self.coders)

    def raw_outputs(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Head outputs per stride, shaped (N, anchors, H, W, 5 + K)."""
        feats = self.backbone["body"](batch)
        maps = self.neck(feats["c3"], feats["c4"], feats["c5"])
        outs = []
        for head, x in zip(self.head, maps):
            y = head(x)
            n, _, h, w = y.shape
            outs.append(y.view(n, ANCHORS_PER_STRIDE, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2))
        return outs

    def forward(self, images: list[torch.Tensor], targets: Optional[list[dict[str, torch.Tensor]]] = None):
        if self.training and targets is None:
            raise ValueError("YOLOv4 in train mode needs targets")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        outputs = [o.float() for o in self.raw_outputs(batch.tensors)]  # box maths in fp32 under AMP
        if self.training:
            return self.loss(outputs, targets, self.anchors)
        detections = self.detect(outputs, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    @torch.no_grad()
    def detect(self, outputs: Sequence[torch.Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[dict]:
        """Decoded, thresholded, NMS-ed detections per image, in network-input coordinates."""
        cfg = self.cfg
        boxes, scores = [], []
        for out, coder, anchors in zip(outputs, self.coders, self.anchors):
            cells = cell_grid(out.shape[2], out.shape[3], out.device, out.dtype)
            decoded = coder.decode(out[..., :4], cells, anchors.view(-1, 1, 1, 2))
            boxes.append(decoded.flatten(1, 3))
            scores.append((out[..., 4:5].sigmoid() * out[..., 5:].sigmoid()).flatten(1, 3))
        all_boxes, all_scores = torch.cat(boxes, dim=1), torch.cat(scores, dim=1)
        results = []
        for b, s, size in zip(all_boxes, all_scores, image_sizes):
            flat = s.flatten()
            keep = (flat > cfg.score_thresh).nonzero().squeeze(1)
            keep = keep[flat[keep].topk(min(PRE_NMS_TOP_N, len(keep))).indices]
            idx, cls = keep // self.num_classes, keep % self.num_classes
            box = clip_boxes_to_image(b[idx], size)
            score = flat[keep]
            kept = batched_nms(box, score, cls, cfg.nms_thresh)[: cfg.detections_per_img]
            results.append({"boxes": box[kept], "scores": score[kept], "labels": cls[kept] + 1})
        return results


def _anchors(cfg: YoloConfig, input_size: int) -> torch.Tensor:
    if cfg.anchors is None:
        return default_anchors(input_size)
    pairs = cfg.anchors
    if len(pairs) != len(STRIDES) * ANCHORS_PER_STRIDE or any(len(p) != 2 or min(p) <= 0 for p in pairs):
        raise TicketlabError(f"model.yolo.anchors: expected 9 positive [w, h] pairs (3 per stride 8, 16, 32), "
                             f"got {pairs}")
    return torch.tensor(pairs, dtype=torch.float32).view(len(STRIDES), ANCHORS_PER_STRIDE, 2)


def _check(cfg: YoloConfig, input_size: int) -> None:
    if input_size % max(STRIDES) or input_size <= 0:
        raise TicketlabError(f"model.yolo.input_size: expected a positive multiple of 32, got {input_size} "
                             "(null takes data.image_size)")
    if cfg.neck_channels < 4 or cfg.neck_channels % 4:
        raise TicketlabError(f"model.yolo.neck_channels: expected a multiple of 4, got {cfg.neck_channels}")
    if len(cfg.scale_xy) != len(STRIDES) or min(cfg.scale_xy) < 1:
        raise TicketlabError(f"model.yolo.scale_xy: expected 3 values ≥ 1 (strides 8, 16, 32), got {cfg.scale_xy}")
    if not 0 <= cfg.label_smoothing < 1:
        raise TicketlabError(f"model.yolo.label_smoothing: expected a fraction in [0, 1), got {cfg.label_smoothing}")
    if cfg.detections_per_img < 1:
        raise TicketlabError(f"model.yolo.detections_per_img: expected a positive integer, got {cfg.detections_per_img}")


def groups() -> dict[str, tuple[str, ...]]:
    return {**trunk_groups(), "neck": ("neck",), "head": ("head",)}


def build_yolov4(cfg: ModelConfig, data: DataBundle) -> BuiltModel:
    """YOLOv4 on `cfg.backbone` (default ResNet-50) for `data`; num_classes counts the background."""
    opts = cfg.yolo
    num_classes = detector_classes(cfg, data.num_classes)
    input_size = opts.input_size or data.image_size
    _check(opts, input_size)
    body, channels = resnet_body(cfg, opts.norm, "model.yolo.norm", {"layer2": "c3", "layer3": "c4", "layer4": "c5"})
    module = YOLOv4(body, channels, num_classes - 1, opts, input_size, _anchors(opts, input_size))
    built = BuiltModel(module=module, groups=groups())
    if cfg.weights:  # a whole YOLOv4 (its class convs may differ), or any checkpoint holding a ResNet
        built.loaded = load_model_weights(module, cfg.weights, new_modules=("head",), prefix=cfg.weights_prefix)
    return built


MODEL_FAMILIES.register("yolov4", ModelFamily(build_yolov4, BOX_DETECTOR, tuple(groups()), tuple(DEFAULT_SCOPE),
                                              backbones=tuple(BACKBONES)))
