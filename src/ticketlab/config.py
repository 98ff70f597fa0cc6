"""Typed experiment configs, loaded from YAML with `--set key=value` overrides.

Every field has a default and a one-line help string (in the field's metadata), so that the resolved
config written into a run directory spells out every choice, and `ticketlab find --help` can list
every key. Unknown keys and wrong types are rejected with a message that names the key (and
suggests the closest valid one), because a typo in a config silently running the default is the
most expensive bug an experiment can have.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS, MODEL_FAMILIES, STRATEGIES, TASKS, Registry, unknown_name
from ticketlab.yaml_file import read_yaml_mapping, safe_load

STEPS_RE = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")
FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def option(default: Any, help: str, *, choices: tuple[str, ...] | None = None, names: Registry | None = None,
           steps: bool = False):
    """A dataclass field carrying its help text and allowed values — fixed `choices`, or the `names`
    of a registry (ticketlab/registry.py) — for docs and validation."""
    meta = {"help": help, "choices": choices, "names": names, "steps": steps}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DetectionConfig:
    """Sizes of an R-CNN beyond family/backbone/width. Defaults are torchvision's (COCO at 800 px);
    the `configs/synth_*_lite.yaml` presets shrink them for 128-px synthetic scenes on a CPU."""

    layout: str = option("fpn", "fpn: ResNet-FPN (torchvision's R-CNNs, paper 001's COCO models); c4: Faster "
                     "R-CNN on the stride-16 layer3 features with layer4 run on each RoI (paper 001's VOC model)",
                     choices=("fpn", "c4"))
    rpn_channels: Optional[int] = option(None, "width of the RPN's 3×3 conv; null = its input width for fpn "
                                     "(torchvision), 512 for c4 (Faster R-CNN's, the paper's VOC code)")
    c4_roi_size: int = option(14, "c4: RoIAlign output size on the layer3 map (layer4 halves it before pooling)")
    norm: str = option("auto", "backbone norm: auto (batchnorm from scratch, frozen with model.weights), "
                   "batchnorm, frozen", choices=("auto", "batchnorm", "frozen"))
    trainable_layers: int = option(5, "trainable ResNet stages counted from layer4 (5 = all incl. stem)")
    returned_layers: list[int] = option([1, 2, 3, 4], "ResNet stages feeding the FPN (1..4)")
    fpn_channels: int = option(256, "FPN output channels (also the RPN and RoI-head input width)")
    anchor_sizes: Optional[list[int]] = option(None, "fpn: one anchor size per FPN level incl. the pooled one, "
                                           "null = 32, 64, 128, … (torchvision); c4: every size on the one map, "
                                           "null = 128, 256, 512 (the paper's VOC code)")
    aspect_ratios: list[float] = option([0.5, 1.0, 2.0], "anchor aspect ratios at every level")
    min_size: Optional[int] = option(None, "images are resized to this shorter side; null = data.image_size")
    max_size: Optional[int] = option(None, "cap on the longer side; null = min_size·1333/800 (torchvision's ratio)")
    rpn_batch_size_per_image: int = option(256, "anchors sampled per image for the RPN loss")
    rpn_pre_nms_top_n_train: int = option(2000, "proposals per level kept before NMS, training")
    rpn_post_nms_top_n_train: int = option(2000, "proposals kept after NMS, training")
    rpn_pre_nms_top_n_test: int = option(1000, "proposals per level kept before NMS, evaluation")
    rpn_post_nms_top_n_test: int = option(1000, "proposals kept after NMS, evaluation")
    box_batch_size_per_image: int = option(512, "RoIs sampled per image for the box-head loss")
    box_representation_size: int = option(1024, "width of the two FC layers of the box head")
    box_detections_per_img: int = option(100, "most detections returned per image")
    box_score_thresh: float = option(0.05, "detections below this score are dropped at evaluation")
    mask_head_channels: int = option(256, "channels of each mask-head conv")
    mask_head_depth: int = option(4, "number of mask-head convs")
    keypoint_head_channels: int = option(512, "channels of each keypoint-head conv")
    keypoint_head_depth: int = option(8, "number of keypoint-head convs")
    num_keypoints: Optional[int] = option(None, "keypoints per instance; null = from the dataset (COCO: 17)")


@dataclass
class SegmentationConfig:
    """Sizes of a DeepLabV3 / DeepLabv3+ beyond family/backbone/width. Defaults are torchvision's
    deeplabv3_resnet50 (deeplabv3) and Chen et al. 2018's DeepLabv3+ (deeplabv3plus)."""

    output_stride: Optional[int] = option(None, "input size / feature size: 8, 16 or 32 (deeplabv3plus: 8 or 16); "
                                      "null = 8 for deeplabv3 (torchvision), 16 for deeplabv3plus; any ResNet, "
                                      "BasicBlocks dilated too (models/dilation.py)")
    atrous_rates: Optional[list[int]] = option(None, "ASPP dilation rates; null = 12, 24, 36 at output "
                                           "stride 8, halved at 16, quartered at 32")
    head_channels: int = option(256, "channels of the ASPP branches and the head conv (DeepLabHead: 256), and of "
                                "the decoder (deeplabv3plus: 256)")
    aux_loss: bool = option(False, "auxiliary FCN head on layer3, loss weight 0.5 (torchvision's reference; "
                            "deeplabv3 only)")


@dataclass
class SingleStageConfig:
    """What YOLOv4 and SSD share: the trunk's norm, the input size and the post-processing."""

    norm: str = option("auto", "backbone norm: auto (batchnorm from scratch, frozen with model.weights), "
                   "batchnorm, frozen", choices=("auto", "batchnorm", "frozen"))
    input_size: Optional[int] = option(None, "image side fed to the network (YOLOv4: the longer side, a multiple "
                                   "of 32; SSD: the square's side, SSD300: 300); null = data.image_size")
    score_thresh: float = option(0.01, "detections below this score are dropped")
    nms_thresh: float = option(0.45, "IoU of per-class non-maximum suppression")
    detections_per_img: int = option(100, "most detections returned per image")


@dataclass
class YoloConfig(SingleStageConfig):
    """Sizes and loss settings of YOLOv4 on a ResNet (models/yolov4.py). Defaults are darknet's yolov4.cfg
    where it has one (iou_thresh, ignore_thresh, scale_x_y, iou_normalizer, NMS 0.45)."""

    neck_channels: int = option(512, "channels of the SPP / stride-32 path of the neck; the stride-16 and "
                            "stride-8 paths have 1/2 and 1/4 of it (YOLOv4: 512)")
    neck_norm: str = option("batchnorm", "norm of every neck and head conv: batchnorm (yolov4.cfg) or groupnorm "
                        "(16 channels per group; for small inputs, where the stride-32 map holds a few cells)",
                        choices=("batchnorm", "groupnorm"))
    anchors: Optional[list[list[float]]] = option(None, "9 anchor [w, h] pairs in input pixels, 3 per stride "
                                              "8, 16, 32; null = YOLOv4's COCO anchors (at 608) scaled to input_size")
    anchor_iou_thresh: float = option(0.213, "besides the best anchor, every anchor whose shape IoU with a box "
                                  "exceeds this also predicts it (yolov4.cfg iou_thresh)")
    ignore_thresh: float = option(0.7, "a prediction overlapping a box by more than this gets no "
                              "no-object loss (yolov4.cfg ignore_thresh)")
    scale_xy: list[float] = option([1.2, 1.1, 1.05], "grid sensitivity per stride 8, 16, 32 (yolov4.cfg scale_x_y)")
    box_gain: float = option(0.07, "weight of the CIoU box loss (yolov4.cfg iou_normalizer)")
    obj_gain: float = option(1.0, "weight of the objectness loss")
    cls_gain: float = option(1.0, "weight of the classification loss (yolov4.cfg cls_normalizer)")
    label_smoothing: float = option(0.0, "class-target smoothing (YOLOv4's bag of freebies; off in yolov4.cfg)")
    score_thresh: float = option(0.005, "detections below this score (objectness × class) are dropped "
                             "(darknet's mAP threshold)")


@dataclass
class SSDConfig(SingleStageConfig):
    """Sizes of SSD on a ResNet (models/ssd.py, torchvision's SSD class). Defaults are SSD300's."""

    extra_channels: list[int] = option([512, 256, 256], "output channels of the extra blocks after layer4, "
                                   "one feature map each (fewer are built when the map reaches 1×1)")
    scales: Optional[list[float]] = option(None, "default-box scales, one per feature map plus one; null = "
                                       "torchvision's DefaultBoxGenerator rule (0.15 … 0.9, linear)")
    iou_thresh: float = option(0.5, "IoU at which a default box is matched to a ground-truth box")
    positive_fraction: float = option(0.25, "hard-negative mining: positives / (positives + negatives) (3:1)")
    topk_candidates: int = option(400, "best boxes per class kept before NMS")
    detections_per_img: int = option(200, "most detections returned per image (torchvision's SSD: 200)")


@dataclass
class ModelConfig:
    family: str = option("lenet_300_100", "model builder", names=MODEL_FAMILIES)
    backbone: Optional[str] = option(None, "backbone of a detector (resnet18, resnet34, resnet50; yolov4, ssd: "
                                 "also resnet101) or of deeplabv3 / deeplabv3plus (also resnet101)")
    width: float = option(1.0, "channel-width multiplier (1.0 = the stock architecture)")
    num_classes: Optional[int] = option(None, "number of classes; null = taken from the dataset")
    weights: Optional[str] = option(None, "local file of pretrained weights (.safetensors, or .pth read with "
                                "weights_only=True); null = random init")
    detection: DetectionConfig = field(default_factory=DetectionConfig,
                                       metadata={"help": "R-CNN sizes (fasterrcnn, maskrcnn, keypointrcnn)"})
    weights_prefix: Optional[str] = option(None, "key prefix of the ResNet inside model.weights, e.g. "
                                       "encoder_q. (null = found automatically)")
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig,
                                             metadata={"help": "DeepLabV3 / v3+ sizes (deeplabv3, deeplabv3plus)"})
    yolo: YoloConfig = field(default_factory=YoloConfig, metadata={"help": "YOLOv4 sizes and loss (yolov4)"})
    ssd: SSDConfig = field(default_factory=SSDConfig, metadata={"help": "SSD sizes (ssd)"})


@dataclass
class DataConfig:
    format: str = option("digits", "dataset format", names=DATA_FORMATS)
    root: Optional[str] = option(None, "directory holding the dataset files (not needed for digits)")
    train: Optional[str] = option(None, "training split: sub-directory or annotation file under root")
    val: Optional[str] = option(None, "validation split: sub-directory or annotation file under root")
    image_size: Optional[int] = option(None, "resize images to this size (null = dataset's own size)")
    val_fraction: float = option(0.25, "held-out fraction when the dataset has no validation split (digits)")
    split_seed: int = option(0, "seed of the train/val split; fixed across training seeds on purpose")
    augment: Optional[bool] = option(None, "training augmentation (random crop + horizontal flip for natural "
                                     "images); null = the model's default: none for MLPs (lenet_300_100), "
                                     "on for conv nets")
    num_workers: int = option(0, "DataLoader worker processes")
    voc_ap: str = option("11point", "VOC-format detection data: the headline mAP@0.5 averages precision at 11 "
                     "recall points (voc07_mAP: VOC2007's devkit, paper 001's code) or is the area under the "
                     "precision envelope (voc_mAP: VOC2010+), or is COCO's bbox_AP (coco: paper 002's AP)",
                     choices=("11point", "area", "coco"))
    max_image_pixels: int = option(89_478_485, "images whose header claims more pixels are refused before "
                                   "decoding (decompression bombs); default PIL's MAX_IMAGE_PIXELS")


@dataclass
class TrainConfig:
    optimizer: str = option("sgd", "optimizer", choices=("sgd", "adam", "adamw"))
    duration: str = option("20ep", "training length per level, e.g. 18000it or 20ep", steps=True)
    batch_size: int = option(64, "training batch size")
    eval_batch_size: int = option(256, "evaluation batch size")
    lr: float = option(0.1, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum (Adam: beta1 stays 0.9)")
    nesterov: bool = option(False, "Nesterov momentum for SGD")
    weight_decay: float = option(0.0, "weight decay (decoupled for adamw)")
    warmup: str = option("0it", "linear learning-rate warmup length, e.g. 500it or 1ep", steps=True)
    schedule: str = option("constant", "learning-rate schedule after warmup",
                       choices=("constant", "multistep", "cosine", "poly"))
    milestones: list[str] = option([], "multistep: steps at which lr is multiplied by gamma, e.g. [12000it, 16000it]",
                               steps=True)
    gamma: float = option(0.1, "multistep: lr decay factor")
    power: float = option(0.9, "poly: exponent of (1 - progress) (DeepLab, paper 002's Faster R-CNN: 0.9)")
    lr_min: float = option(0.0, "cosine, poly: the lr reached at the end of training (paper 002's YOLOv4: 1e-6)")
    eval_every: str = option("1ep", "evaluate on the validation set every N steps (e.g. 1ep, 500it)", steps=True)
    checkpoint_every: str = option("1ep", "write a resumable checkpoint every N steps", steps=True)
    seed: int = option(0, "seed of initialisation, data order and augmentation")
    deterministic: bool = option(True, "torch.use_deterministic_algorithms; needed for bit-exact resume on GPU")
    device: str = option("auto", "auto (cuda if available), cpu, cuda, cuda:N")
    amp: bool = option(False, "automatic mixed precision on CUDA (ignored on CPU)")
    amp_dtype: str = option("auto", "AMP dtype: bf16, fp16 (with grad scaling), auto (bf16 where supported)",
                        choices=("auto", "bf16", "fp16"))
    channels_last: bool = option(False, "channels_last memory format for conv weights on CUDA (ignored on CPU)")
    sync_batchnorm: bool = option(True, "under torchrun on CUDA, BatchNorm normalises over the whole batch "
                              "(SyncBatchNorm); CPU/gloo has none: each process uses its own shard")
    dist_timeout: int = option(1800, "seconds a process waits for the others under torchrun before failing")
    tensorboard: bool = option(True, "write loss terms, lr and metrics to RUN_DIR/tensorboard/level_NN")


@dataclass
class PruneConfig:
    scope: Optional[list[str]] = option(None, "module groups to prune (null = every conv/linear weight)")
    include: list[str] = option([], "extra parameter-name patterns (fnmatch) to add to the scope")
    exclude: list[str] = option([], "module groups or parameter-name patterns to keep dense")
    strategy: str = option("global", "how to choose the weights to remove: magnitude of the trained weights "
                       "(global, layerwise), random, or scored at the rewind point (pruning at init: snip, grasp, "
                       "synflow, each also *_layerwise; docs/research.md)", names=STRATEGIES)
    rate: float = option(0.2, "fraction of the remaining scope weights removed per level")
    rates: dict[str, float] = option({}, "per-group rates, e.g. {fc: 0.1}: each named module group loses exactly "
                                     "round(rate × its remaining weights) per level (ranked within the group); "
                                     "the rest of the scope follows prune.rate")
    levels: int = option(8, "number of pruning levels after the dense level 0")
    granularity: str = option("weight", "what a level removes: weight (single weights, the papers' IMP); channel "
                              "(whole conv output channels / linear output units, coupled channels together, "
                              "counts in channels; exports compacted to a smaller dense model); N:M such as 2:4 "
                              "(the N largest of every M consecutive weights of a row kept, reached at level 1 "
                              "and then held; docs: README 'Granularity')")
    channel_score: str = option("l1", "granularity channel: how a channel is ranked, relative to its layer's mean. "
                                "l1 = the L1 norm of its filters (magnitude, the lottery-ticket rule; defined for "
                                "every conv and linear layer); bn_gamma = |γ| of the BatchNorms after it (You et al. "
                                "2020's early-bird channels; every pruned channel needs a BatchNorm)",
                                choices=("l1", "bn_gamma"))
    rewind: str = option("init", "weights each level restarts from: init, pretrained, Nit or Nep (late resetting)")
    rewind_optimizer: bool = option(False, "late resetting also restores the optimizer state of the rewind point")
    rewind_mode: str = option("weights", "weights: each level restarts from the rewind point ⊙ mask; lr: from the "
                          "previous level's final weights ⊙ mask, with the learning-rate schedule restarted at the "
                          "rewind step (Renda et al. 2020)", choices=("weights", "lr"))
    score_batches: int = option(1, "pruning at init (snip, grasp): training batches the scores are summed over "
                            "(SNIP: one mini-batch)")
    synflow_iterations: int = option(100, "synflow: pruning iterations, exponential schedule (Tanaka et al. 2020: 100)")
    early_bird: list[float] = option([], "fractions of level-0 training at which to draw an early-bird mask "
                                     "(e.g. [0.1, 0.2, 0.3]); the end of level 0 is always drawn too")
    early_bird_threshold: float = option(0.02, "early-bird detector: mask distance (1 - IoU of kept weights) "
                                         "between consecutive draws counted as stable")
    early_bird_patience: int = option(2, "early-bird detector: consecutive stable draws that make the mask found")
    early_bird_stop: bool = option(False, "end level 0 (dense training) once the early-bird detector fires")


@dataclass
class SSLConfig:
    """Self-supervised pre-training (tasks simclr, moco; paper 002) and its retrieval / kNN / linear-probe evaluation."""

    projection_dim: int = option(128, "output size of the projection MLP head (SimCLR, MoCo v2: 128)")
    projection_hidden: Optional[int] = option(None, "hidden size of the projection MLP; null = backbone feature size")
    temperature: float = option(0.5, "softmax temperature of the contrastive loss (SimCLR: 0.5, MoCo v2: 0.2)")
    moco_momentum: float = option(0.999, "moco: EMA factor of the key encoder (MoCo: 0.999)")
    moco_queue: int = option(65536, "moco: number of negative keys kept in the queue (MoCo: 65536)")
    retrieval_batch_size: int = option(256, "batch size n of top-1 retrieval accuracy (paper 002 Eq. 2, over the "
                                       "2n views of a batch); paper 002's pre-training batch: 256")
    moco_retrieval: str = option("key", "moco: what Eq. 2 compares each query q(view 1) with: key = the momentum "
                             "encoder's k(view 2), MoCo's second branch (paper 002 App. A.2); query = q(view 2), "
                             "the query encoder on both views, for short runs whose key encoder still lags "
                             "(docs/ssl.md)", choices=("key", "query"))
    knn_k: int = option(200, "neighbours of the weighted kNN evaluation (InstDisc/MoCo: 200)")
    knn_temperature: float = option(0.1, "temperature of the kNN neighbour weights exp(sim/t) (InstDisc/MoCo: 0.1)")
    linear_probe: bool = option(False, "also fit a logistic regression on frozen features (linear_probe_accuracy)")



@dataclass
class InitConfig:
    """Ticket / mask transfer (DESIGN.md vocabulary; docs/transfer.md)."""

    source: Optional[str] = option(None, "finished level of another run (RUN_DIR/level_NN) whose mask "
                               "(mode ticket: and weights) this run starts from; null = no transfer")
    mode: str = option("ticket", "ticket: mask and values; mask: mask only, on this model's own weights; "
                   "magnitude: keep the largest weights of this model's own (pretrained) ResNet, no source",
                   choices=("ticket", "mask", "magnitude"))
    map: str = option("backbone", "backbone: source ResNet → this model's ResNet (any prefixes); shared: "
                  "every tensor with the same name and shape", choices=("backbone", "shared"))
    values: str = option("final", "mode ticket: the source level's trained weights (final) or the weights "
                     "it started from (rewind)", choices=("final", "rewind"))
    sparsity: float = option(0.0, "mode magnitude: fraction of the ResNet's conv weights removed")


@dataclass
class Config:
    task: str = option("classification", "what the model is trained for", names=TASKS)
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "model builder"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "dataset"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training of each level"})
    prune: PruneConfig = field(default_factory=PruneConfig, metadata={"help": "IMP"})
    ssl: SSLConfig = field(default_factory=SSLConfig, metadata={"help": "self-supervised tasks (simclr, moco)"})
    init: InitConfig = field(default_factory=InitConfig,
                             metadata={"help": "start from another run's ticket or mask (transfer)"})


# ----------------------------------------------------------------------------------------------
# Step lengths ("500it", "2ep")


def parse_steps(value: str, steps_per_epoch: int, *, key: str = "steps") -> int:
    """Turn '500it' / '2ep' / '500' into a number of iterations."""
    m = STEPS_RE.match(str(value))
    if m is None:
        if str(value).strip().isdigit():
            return int(value)
        raise TicketlabError(f"{key}: expected a step count like '500it' or '2ep', got {value!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n if unit == "it" else n * steps_per_epoch


# ----------------------------------------------------------------------------------------------
# Dict <-> dataclass with validation


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, key: str, meta: dict) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise TicketlabError(f"config key {key}: must not be null (expected {_type_name(tp)})")
    if typing.get_origin(tp) is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise TicketlabError(f"config key {key}: expected a mapping such as {{fc: 0.1}}, got {value!r}")
        return {_coerce(k, key_tp, f"{key} key", {}): _coerce(v, value_tp, f"{key}.{k}", {}) for k, v in value.items()}
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]
        return [_coerce(v, item_tp, f"{key}[{i}]", {**meta, "choices": None, "names": None})
                for i, v in enumerate(value)]
    if meta.get("steps"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TicketlabError(f"config key {key}: expected a step count like '500it' or '2ep', got {value!r}")
        text = f"{value}it" if isinstance(value, int) else value.strip()
        if STEPS_RE.match(text) is None:
            raise TicketlabError(f"config key {key}: expected a step count like '500it' or '2ep', got {value!r}")
        return text.replace(" ", "")
    if tp is bool:
        if not isinstance(value, bool):
            raise TicketlabError(f"config key {key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TicketlabError(f"config key {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and FLOAT_RE.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TicketlabError(f"config key {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise TicketlabError(f"config key {key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise TicketlabError(f"config key {key}: expected a string, got {value!r}")
        value = str(value)
        names = meta.get("names")
        choices = list(meta.get("choices") or ()) or (names.names() if names is not None else [])
        if choices and value not in choices:
            raise TicketlabError(unknown_name(f"config key {key}", value, choices))
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a plain mapping, rejecting unknown keys and wrong types."""
    where = prefix.rstrip(".") or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TicketlabError(f"config key {where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            extra = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            shown = repr(key)[1:-1] if isinstance(key, str) else repr(key)  # escapes a newline in the key
            raise TicketlabError(f"unknown config key '{prefix}{shown}'{extra}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, data[name], f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(data[name], tp, f"{prefix}{name}", dict(f.metadata))
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def flatten(d: Mapping, prefix: str = "") -> dict:
    """{'a': {'b': 1}} → {'a.b': 1}: config keys as `--set` and error messages spell them."""
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def dense_part(flat: Mapping) -> dict:
    """The keys of a flattened config that a run's dense level 0 is a function of: all but `prune.*`,
    which only decides what is done with the dense weights. The shared dense level of a study
    (lottery/shared.py) and each series' dense reference in the report (analysis/study.py) group by it."""
    return {k: v for k, v in flat.items() if not k.startswith("prune.")}


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` strings (value parsed as YAML) to a nested dict, in order."""
    for item in overrides:
        if "=" not in item:
            raise TicketlabError(f"--set {item!r}: expected key=value, e.g. --set train.seed=1")
        key, raw = item.split("=", 1)
        try:
            value = safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise TicketlabError(f"--set {key}: value {raw!r} is not valid YAML ({e.__class__.__name__})")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise TicketlabError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from the defaults when `path` is None) and apply overrides."""
    data: Any = {}
    if path is not None:
        path = Path(path)
        data = read_yaml_mapping(path, "config", "a mapping of config keys")
    data = apply_overrides(data, overrides or [])
    try:
        return validate(from_dict(Config, data))
    except TicketlabError as e:
        raise TicketlabError(f"{path}: {e}" if path is not None else str(e)) from None


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's limit; torch takes any seed in this range too


def check_seed(key: str, value: int) -> int:
    """A seed (config key or --seed) in 0..SEED_MAX, which every library a seed reaches accepts."""
    if not 0 <= value <= SEED_MAX:
        raise TicketlabError(f"{key}: expected a seed in 0..{SEED_MAX}, got {value}")
    return value


def validate(cfg: Config) -> Config:
    """Range checks that types cannot express, done at load time so the error names the file;
    values torch or the DataLoader would otherwise reject with a traceback, much later."""
    for key, seed in (("train.seed", cfg.train.seed), ("data.split_seed", cfg.data.split_seed)):
        check_seed(f"config key {key}", seed)
    for key, rate in (("prune.rate", cfg.prune.rate), *((f"prune.rates.{g}", r) for g, r in cfg.prune.rates.items())):
        if not 0.0 < rate < 1.0:
            raise TicketlabError(f"config key {key}: expected a fraction in (0, 1), got {rate}")
    t = cfg.train
    for key, value, low in (("prune.levels", cfg.prune.levels, 0), ("train.batch_size", t.batch_size, 1),
                            ("train.eval_batch_size", t.eval_batch_size, 1), ("train.lr", t.lr, 0),
                            ("train.momentum", t.momentum, 0), ("train.weight_decay", t.weight_decay, 0),
                            ("train.lr_min", t.lr_min, 0),
                            ("data.num_workers", cfg.data.num_workers, 0), ("data.image_size", cfg.data.image_size, 1),
                            ("data.max_image_pixels", cfg.data.max_image_pixels, 1)):
        if value is not None and value < low:
            raise TicketlabError(f"config key {key}: expected {low} or more, got {value}")
    check_granularity(cfg.prune)
    if cfg.prune.rewind_mode == "lr" and cfg.prune.rewind_optimizer:
        raise TicketlabError("config key prune.rewind_optimizer: only applies with prune.rewind_mode: weights "
                             "(lr rewinding keeps the trained weights and starts a fresh optimizer)")
    for key, value in (("prune.score_batches", cfg.prune.score_batches),
                       ("prune.synflow_iterations", cfg.prune.synflow_iterations)):
        if value < 1:
            raise TicketlabError(f"config key {key}: expected 1 or more, got {value}")
    if t.lr_min > t.lr:
        raise TicketlabError(f"config key train.lr_min: expected at most train.lr ({t.lr}), got {t.lr_min}")
    if not t.power > 0:
        raise TicketlabError(f"config key train.power: expected a positive exponent, got {t.power}")
    if not cfg.model.width > 0:
        raise TicketlabError(f"config key model.width: expected a positive multiplier, got {cfg.model.width}")
    resolve_augment(cfg)
    return cfg


NM_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_nm(text: str) -> Optional[tuple[int, int]]:
    """'2:4' → (2, 4); None for 'weight' / 'channel'; TicketlabError for anything else."""
    if text in ("weight", "channel"):
        return None
    m = NM_RE.match(text)
    if m is None or not 0 < int(m.group(1)) < int(m.group(2)):
        raise TicketlabError(f"config key prune.granularity: expected weight, channel or N:M with 0 < N < M "
                             f"(e.g. 2:4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def check_granularity(p: PruneConfig) -> None:
    """prune.granularity's value, and the settings that only exist for single weights."""
    parse_nm(p.granularity)
    if p.granularity == "weight":
        return
    strategy = STRATEGIES.get(p.strategy) if p.strategy in STRATEGIES else None
    if strategy is not None and strategy.next_mask is None:
        raise TicketlabError(f"config key prune.strategy: {p.strategy} scores single weights at initialisation; "
                             f"prune.granularity {p.granularity} works with global, layerwise or random")
    for key, value in (("prune.rates", p.rates), ("prune.early_bird", p.early_bird),
                       ("prune.early_bird_stop", p.early_bird_stop)):
        if value:
            raise TicketlabError(f"config key {key}: applies to prune.granularity weight only, "
                                 f"not {p.granularity}")


def resolve_augment(cfg: Config) -> None:
    """Fill a null `data.augment` in place with the model family's default (`ModelFamily.augment`), so
    the resolved config a run writes says which was used."""
    if cfg.data.augment is None:
        cfg.data.augment = MODEL_FAMILIES.get(cfg.model.family).augment


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def describe_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every leaf field: used to generate the CLI's help text."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            text = f.metadata.get("help", "")
            if f.metadata.get("names") is not None:
                text += ": " + ", ".join(f.metadata["names"].names())
            rows.append((prefix + f.name, yaml.safe_dump(default, default_flow_style=True).strip()
                         .removesuffix("...").strip(), text))
    return rows
