"""What `ticketlab info` shows: a model's module groups with their share of the network, or the
sparsity report of a finished level (per tensor, per group, scope and network, zero kernels)."""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import Config
from ticketlab.lottery.evaluate import find_run
from ticketlab.lottery.experiment import build_experiment, load_state
from ticketlab.sparsity import group_of, load_mask, sparsity_report


def group_table(cfg: Config) -> tuple[list[dict], int, int]:
    """Rows (group, params, % of network, params in scope) + total params + scope size."""
    exp = build_experiment(cfg)
    model = exp.model
    total = sum(p.numel() for p in model.parameters())
    scope = set(exp.scope)
    rows = []
    for group in exp.built.groups:
        members = [(n, p) for n, p in model.named_parameters() if group_of(n, {group: exp.built.groups[group]})]
        count = sum(p.numel() for _, p in members)
        in_scope = sum(p.numel() for n, p in members if n in scope)
        rows.append({"group": group, "params": count, "percent": 100.0 * count / total, "in_scope": in_scope})
    scope_size = sum(p.numel() for n, p in model.named_parameters() if n in scope)
    return rows, total, scope_size


def level_report(level_dir: Path):
    level_dir = Path(level_dir)
    run = find_run(level_dir)
    exp = build_experiment(run.load_config())
    exp.model.load_state_dict(load_state(level_dir / "final.safetensors", exp.model))
    shapes = {n: tuple(exp.model.state_dict()[n].shape) for n in exp.scope}
    mask = load_mask(level_dir / "mask.safetensors", shapes)
    return sparsity_report(exp.model, mask, exp.built.groups)
