"""What a task is: the base class every task derives from, and what it declares about itself.

A task knows how to turn a batch into loss terms and how to evaluate a model on a loader; it knows
nothing about pruning. Everything the rest of ticketlab needs to know about a task is declared on
its class, in the task's own file, and the class is registered under its name in
`ticketlab.registry.TASKS` (see docs/extending.md):

- `name`, `metrics` (what `evaluate` reports that the report draws, headline first), `headline`
  and `higher_is_better` (the metric summaries and *matching* verdicts use, and its direction);
- `data_needs`: what the task reads from a dataset (a format is accepted when it provides all of
  it, `data.bundle.DataFormat.provides`); `model_kinds`: the model-family kinds it trains
  (`models.spec.ModelFamily.kind`);
- optional steps, as methods with defaults here: `adapt_data` / `adapt_model` (e.g. two views per
  image and the contrastive wrapper), `after_step` (MoCo's momentum encoder), sharded evaluation
  (`shards_evaluation`), saving detections, and how to build an example input for export.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.rundir import TaskRecord

if TYPE_CHECKING:
    from ticketlab.config import Config
    from ticketlab.data.bundle import DataBundle
    from ticketlab.models.spec import BuiltModel


class Task:
    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # the metrics of `evaluate` the report draws a curve of, headline first
    headline: ClassVar[str]  # the key of `evaluate`'s result that summaries and verdicts use
    higher_is_better: ClassVar[bool] = True  # direction of `headline`
    data_needs: ClassVar[frozenset[str]]  # data.bundle names: CLASS_LABELS, BOXES, …
    model_kinds: ClassVar[tuple[str, ...]]  # models.spec.ModelFamily.kind values it trains
    iou_types: ClassVar[tuple[str, ...]] = ()  # COCO iou types it scores (the report's COCO breakdowns)
    shards_evaluation: ClassVar[bool] = False  # implements evaluate_shard / merge_evaluations (DDP)
    saves_detections: ClassVar[bool] = False  # implements save_detections (COCO results JSON)

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def build(cls, cfg: "Config", data: "DataBundle") -> "Task":
        """The task for a run of `cfg` on `data` (after `adapt_data`)."""
        return cls()

    @classmethod
    def adapt_data(cls, data: "DataBundle", cfg: "Config") -> "DataBundle":
        """The dataset as this task trains on it (default: as the format built it)."""
        return data

    @classmethod
    def adapt_model(cls, built: "BuiltModel", cfg: "Config") -> "BuiltModel":
        """The model as this task trains it (default: as the family built it)."""
        return built

    # -- training and evaluation ----------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        """Loss terms for one training batch; must include the total under 'loss'."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """Metrics on a validation loader (the model is put in eval mode by the caller)."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step, once the pruned weights are zero again. It must be a
        deterministic function of the model, so that resumed training stays bit-exact."""

    def evaluate_shard(self, model: nn.Module, loader: Iterable, device: torch.device) -> Any:
        """One slice's raw results (a DDP rank's), when `shards_evaluation`."""
        raise NotImplementedError(f"task {self.name} does not shard its evaluation")

    def merge_evaluations(self, shards: list[Any]) -> dict[str, float]:
        """Metrics from every slice's `evaluate_shard` results, when `shards_evaluation`."""
        raise NotImplementedError(f"task {self.name} does not shard its evaluation")

    def save_detections(self, path: str | Path) -> None:
        """Write the last evaluation's detections (a COCO results JSON), when `saves_detections`."""
        raise TicketlabError(f"--save-detections: task {self.name!r} does not produce detections")

    # -- export ---------------------------------------------------------------------------------

    def example_input(self, image: torch.Tensor) -> Any:
        """What the model is called with on one validation image (C×H×W): a batch of one."""
        return image.unsqueeze(0)

    def onnx_input(self, example: Any) -> torch.Tensor:
        """The tensor ONNX Runtime is fed for `example` (the graph's one input, 'images')."""
        return example

    batch_axis: ClassVar[bool] = True  # the exported graph's input has a dynamic batch axis

    @classmethod
    def record(cls) -> TaskRecord:
        """What RUN_DIR/task.json holds, so analysis reads the headline without importing tasks."""
        return TaskRecord(cls.name, cls.headline, cls.higher_is_better, tuple(cls.metrics))

