"""R-CNN builders (paper 001): Faster / Mask / Keypoint R-CNN on a width-scaled ResNet-FPN, and
Faster R-CNN in the C4 layout of the paper's VOC model (`layout: c4`, `models/detection_c4.py`).

The models are torchvision's own classes, so the training and evaluation code of torchvision's
references applies unchanged; only the backbone (our `torchvision_resnet`, any width) and the head
sizes are chosen here. Nothing is downloaded: every `weights=` is None, and a local classification
checkpoint (`model.weights`) initialises the trunk (`models/resnet_keys.py`).

Module groups (DESIGN.md contract, paper 001 Table 3) are module paths, never name substrings — the
ResNet shortcut convs (`layerN.0.downsample`) live under their stage and so belong to base/top:
  base = backbone.body.{conv1, bn1, layer1, layer2, layer3}   top = backbone.body.layer4
  (the stages of paper 001's C4 Base and Top, so a scope means the same on both layouts)
  fpn = backbone.fpn   rpn = rpn   box_head = roi_heads.box_head (fc6, fc7)
  box_predictor = roi_heads.box_predictor (cls_score, bbox_pred)
  mask_head / mask_predictor, keypoint_head / keypoint_predictor (when the family has them)
  stem = backbone.body.{conv1, bn1} (inside base; there so `exclude: [stem]` means what it means for
  the classifiers).
Every parameter belongs to exactly one of the groups in `partition_groups(family)`.

Norm layer: `norm: auto` gives trainable BatchNorm2d when the model starts from scratch (a random
FrozenBatchNorm is an identity, and a deep ResNet without normalisation barely trains) and
torchvision's FrozenBatchNorm2d when `model.weights` is set (the statistics of the pretrained
trunk are kept, as torchvision does when it loads an ImageNet backbone).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from ticketlab.config import DetectionConfig, ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.detection_c4 import WidthRPNHead, build_c4_fasterrcnn, c4_groups
from ticketlab.models.resnet import stage_channels, torchvision_resnet
from ticketlab.models.resnet_keys import load_model_weights
from ticketlab.models.spec import BOX_DETECTOR, KEYPOINT_DETECTOR, MASK_DETECTOR, BuiltModel, ModelFamily
from ticketlab.registry import MODEL_FAMILIES
from ticketlab.sparsity.scope import module_path, under

BACKBONES = {"resnet18": 18, "resnet34": 34, "resnet50": 50}
DEFAULT_BACKBONE = "resnet18"  # paper 001's main backbone
BODY = "backbone.body"
COMMON_GROUPS: dict[str, tuple[str, ...]] = {
    "base": (f"{BODY}.conv1", f"{BODY}.bn1", f"{BODY}.layer1", f"{BODY}.layer2", f"{BODY}.layer3"),
    "top": (f"{BODY}.layer4",),
    "fpn": ("backbone.fpn",),
    "rpn": ("rpn",),
    "box_head": ("roi_heads.box_head",),
    "box_predictor": ("roi_heads.box_predictor",),
}
FAMILY_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "fasterrcnn": {},
    "maskrcnn": {"mask_head": ("roi_heads.mask_head",), "mask_predictor": ("roi_heads.mask_predictor",)},
    "keypointrcnn": {"keypoint_head": ("roi_heads.keypoint_head",),
                     "keypoint_predictor": ("roi_heads.keypoint_predictor",)},
}
STEM = (f"{BODY}.conv1", f"{BODY}.bn1")
COCO_NUM_KEYPOINTS = 17


def partition_groups(family: str) -> tuple[str, ...]:
    """The groups that split a `family` model's parameters exactly (all but `stem`)."""
    return tuple(COMMON_GROUPS) + tuple(FAMILY_GROUPS[family])


def detection_groups(family: str) -> dict[str, tuple[str, ...]]:
    return {**COMMON_GROUPS, **FAMILY_GROUPS[family], "stem": STEM}


def _norm_layer(opts: DetectionConfig, cfg: ModelConfig) -> type[nn.Module]:
    mode = opts.norm
    if mode == "auto":
        mode = "frozen" if cfg.weights else "batchnorm"
    if mode == "frozen":
        return FrozenBatchNorm2d
    if mode == "batchnorm":
        return nn.BatchNorm2d
    raise TicketlabError(f"model.detection.norm: expected auto, batchnorm or frozen, got {opts.norm!r}")


def detection_trunk(cfg: ModelConfig, opts: DetectionConfig) -> nn.Module:
    """The ResNet trunk of `cfg.backbone` at `cfg.width`, its first stages frozen as
    `trainable_layers` says (shared by the FPN and the C4 layout)."""
    name = cfg.backbone or DEFAULT_BACKBONE  # one of BACKBONES (build_model checks it)
    if not 0 <= opts.trainable_layers <= 5:
        raise TicketlabError(f"model.detection.trainable_layers: expected 0..5, got {opts.trainable_layers}")
    trunk = torchvision_resnet(BACKBONES[name], cfg.width, norm_layer=_norm_layer(opts, cfg))
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][: opts.trainable_layers]
    if opts.trainable_layers == 5:
        trainable.append("bn1")
    for pname, p in trunk.named_parameters():
        if not any(under(module_path(pname), t) for t in trainable):
            p.requires_grad_(False)
    return trunk


def _backbone(cfg: ModelConfig, opts: DetectionConfig) -> BackboneWithFPN:
    layers = sorted(set(opts.returned_layers))
    if not layers or layers[0] < 1 or layers[-1] > 4:
        raise TicketlabError(f"model.detection.returned_layers: expected stages in 1..4, got {opts.returned_layers}")
    trunk = detection_trunk(cfg, opts)
    channels = stage_channels(trunk)
    return BackboneWithFPN(
        trunk,
        return_layers={f"layer{k}": str(i) for i, k in enumerate(layers)},
        in_channels_list=[channels[k - 1] for k in layers],
        out_channels=opts.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )


def _num_keypoints(opts: DetectionConfig, data: DataBundle) -> int:
    if opts.num_keypoints is not None:
        return opts.num_keypoints
    for holder in (data, getattr(data.train, "meta", None)):
        k = getattr(holder, "num_keypoints", None)
        if isinstance(k, int) and k > 0:
            return k
    return COCO_NUM_KEYPOINTS


def build_detection_model(family: str, cfg: ModelConfig, data: DataBundle) -> BuiltModel:
    """Build `family` (fasterrcnn | maskrcnn | keypointrcnn) for `data`, sized by `cfg.detection`.

    `num_classes` counts the background (torchvision's convention, like `DataBundle.num_classes`
    of a detection dataset): cfg.num_classes when set, else data.num_classes. When `cfg.weights` is
    set it is loaded: a full detector state_dict as-is, a ResNet checkpoint (torchvision, MoCo,
    SimCLR wrapping; `models/resnet_keys.py`) into the backbone trunk.
    """
    opts = cfg.detection
    num_classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
    if num_classes < 2:
        raise TicketlabError(f"model.num_classes: a detector needs at least 2 classes (background + one), "
                             f"got {num_classes}")
    min_size = opts.min_size or data.image_size
    sampling: dict[str, Any] = dict(
        min_size=min_size, max_size=opts.max_size or max(min_size, round(min_size * 1333 / 800)),
        rpn_batch_size_per_image=opts.rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=opts.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=opts.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=opts.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=opts.rpn_post_nms_top_n_test,
        box_batch_size_per_image=opts.box_batch_size_per_image,
        box_detections_per_img=opts.box_detections_per_img, box_score_thresh=opts.box_score_thresh,
    )
    if opts.layout == "c4":
        module_c4 = build_c4_fasterrcnn(family, detection_trunk(cfg, opts), opts, num_classes, sampling)
        return _finish(cfg, BuiltModel(module=module_c4, groups=c4_groups()))
    if opts.layout != "fpn":
        raise TicketlabError(f"model.detection.layout: expected fpn or c4, got {opts.layout!r}")
    backbone = _backbone(cfg, opts)
    levels = len(set(opts.returned_layers)) + 1  # + the max-pooled level
    sizes = opts.anchor_sizes or [32 * 2**i for i in range(levels)]
    if len(sizes) != levels:
        raise TicketlabError(f"model.detection.anchor_sizes: expected {levels} sizes (one per FPN level), "
                             f"got {len(sizes)}")
    anchors = AnchorGenerator(tuple((int(s),) for s in sizes), (tuple(opts.aspect_ratios),) * levels)
    ch, rep = opts.fpn_channels, opts.box_representation_size
    feature_names = [str(i) for i in range(levels - 1)]
    rpn_head = (WidthRPNHead(ch, opts.rpn_channels, len(opts.aspect_ratios)) if opts.rpn_channels else None)
    kwargs: dict[str, Any] = dict(
        sampling, rpn_anchor_generator=anchors, rpn_head=rpn_head,
        box_roi_pool=MultiScaleRoIAlign(feature_names, 7, 2),
        box_head=TwoMLPHead(ch * 7 * 7, rep), box_predictor=FastRCNNPredictor(rep, num_classes),
    )
    if family == "fasterrcnn":
        module: nn.Module = FasterRCNN(backbone, **kwargs)
    elif family == "maskrcnn":
        layers = [opts.mask_head_channels] * opts.mask_head_depth
        module = MaskRCNN(backbone, mask_roi_pool=MultiScaleRoIAlign(feature_names, 14, 2),
                          mask_head=MaskRCNNHeads(ch, layers, 1),
                          mask_predictor=MaskRCNNPredictor(layers[-1] if layers else ch,
                                                           opts.mask_head_channels, num_classes), **kwargs)
    else:
        layers = [opts.keypoint_head_channels] * opts.keypoint_head_depth
        module = KeypointRCNN(backbone, keypoint_roi_pool=MultiScaleRoIAlign(feature_names, 14, 2),
                              keypoint_head=KeypointRCNNHeads(ch, layers),
                              keypoint_predictor=KeypointRCNNPredictor(layers[-1] if layers else ch,
                                                                       _num_keypoints(opts, data)), **kwargs)
    return _finish(cfg, BuiltModel(module=module, groups=detection_groups(family)))


def _finish(cfg: ModelConfig, built: BuiltModel) -> BuiltModel:
    if cfg.weights:  # a whole detector's state_dict as-is, or any ResNet checkpoint into the trunk
        built.loaded = load_model_weights(built.module, cfg.weights, prefix=cfg.weights_prefix)
    return built


def export_note(cfg: ModelConfig, data: DataBundle) -> str:
    classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
    d = cfg.detection
    if d.layout == "c4":
        return ("C4 layout (models/detection_c4.py): torchvision's FasterRCNN class with ticketlab's C4 backbone, "
                "RPN head and box head; build it with ticketlab.models.build_model from the run's config.yaml")
    if cfg.width == 1.0 and d.fpn_channels == 256:
        return (f"loads with strict=True into torchvision's {cfg.family} class on resnet_fpn_backbone("
                f"backbone_name={cfg.backbone or DEFAULT_BACKBONE!r}, weights=None, returned_layers={d.returned_layers}) "
                f"with num_classes={classes} and the run's model.detection sizes (box head "
                f"{d.box_representation_size}, anchors, min/max size, thresholds)")
    return (f"model.width={cfg.width}, fpn_channels={d.fpn_channels}: fits the same detector at that size, "
            f"not one built on torchvision's stock resnet_fpn_backbone; build it with ticketlab.models.build_model "
            "from the run's config.yaml")


for _family, _kind in (("fasterrcnn", BOX_DETECTOR), ("maskrcnn", MASK_DETECTOR), ("keypointrcnn", KEYPOINT_DETECTOR)):
    _groups = [*detection_groups(_family), *(c4_groups() if _family == "fasterrcnn" else ())]  # by layout
    MODEL_FAMILIES.register(_family, ModelFamily(partial(build_detection_model, _family), _kind,
                                                 tuple(dict.fromkeys(_groups)), backbones=tuple(BACKBONES),
                                                 export_note=export_note))
