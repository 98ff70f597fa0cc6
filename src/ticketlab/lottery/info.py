"""What `ticketlab info` shows: a model's module groups with their share of the network, or the
sparsity report of a finished level (per tensor, per group, scope and network, zero kernels)."""

from __future__ import annotations

from pathlib import Path

from dataclasses import replace

import torch

from ticketlab.config import Config
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.spec import BuiltModel
from ticketlab.lottery.opened import open_level
from ticketlab.sparsity import group_of, resolve_scope, sparsity_report
from ticketlab.tasks import build_task_data, build_task_model


def model_for_info(cfg: Config) -> tuple[BuiltModel, list[str]]:
    """The model a config describes and its scope, built for counting only: pretrained weights are
    not read, and when the dataset is not on this machine `model.num_classes` stands in for it."""
    cfg = replace(cfg, model=replace(cfg.model, weights=None))
    try:
        data = build_task_data(cfg)
    except TicketlabError as e:
        if cfg.model.num_classes is None:
            raise TicketlabError(f"{e} (ticketlab info needs the data to count classes, or model.num_classes)") from None
        data = DataBundle(train=[], val=[], num_classes=cfg.model.num_classes, in_channels=3,
                          image_size=cfg.data.image_size or 224)
    torch.manual_seed(cfg.train.seed)
    built = build_task_model(cfg, data)
    p = cfg.prune
    scope = p.scope if p.scope is not None else built.default_scope
    return built, resolve_scope(built.module, built.groups, scope, p.include, p.exclude)


def group_table(cfg: Config) -> tuple[list[dict], int, int]:
    """Rows (group, params, % of network, params in scope, prunable % of network) + total params +
    scope size. `prunable %` is the share of the network a group's weights take when the group is
    named in `prune.scope`, after `prune.exclude`: what paper 001 Table 3 lists as "Param %"."""
    built, scope_names = model_for_info(cfg)
    model = built.module
    total = sum(p.numel() for p in model.parameters())
    scope = set(scope_names)
    eligible = set(resolve_scope(model, built.groups, None, (), cfg.prune.exclude))
    rows = []
    for group, paths in built.groups.items():
        members = [(n, p) for n, p in model.named_parameters() if group_of(n, {group: paths})]
        count = sum(p.numel() for _, p in members)
        in_scope = sum(p.numel() for n, p in members if n in scope)
        prunable = sum(p.numel() for n, p in members if n in eligible)
        rows.append({"group": group, "params": count, "percent": 100.0 * count / total, "in_scope": in_scope,
                     "prunable %": 100.0 * prunable / total})
    scope_size = sum(p.numel() for n, p in model.named_parameters() if n in scope)
    return rows, total, scope_size


def level_report(level_dir: Path):
    opened = open_level(Path(level_dir))
    return sparsity_report(opened.experiment.model, opened.mask, opened.experiment.built.groups)
