"""Ticket and mask transfer: start a run from another run's mask (and values), `init:` in the config.

Paper 001 §4.2 moves ImageNet tickets into the backbone of an R-CNN and fine-tunes the whole
network with the transferred pruned weights held at zero; its App. A ("mask transfer") keeps the
largest pretrained backbone weights without any source run; App. B moves a detector's ticket into a
keypoint detector, copying every tensor the two share. Paper 002 puts masks found on supervised or
self-supervised pre-training onto pre-trained weights θ_p. All of them are one step here: a mask over
some of this model's parameters, plus (for `ticket`) the values to start from, computed once before
level 0. The transferred mask joins the run's masks, so it is enforced in level 0 and carried into
every later IMP level (which prunes only among still-kept weights of `prune.scope`).

  mode ticket     mask + values of the source level (`values: final` trained, `rewind` its start)
  mode mask       mask only, on this model's own weights (`model.weights`, or its random init)
  mode magnitude  no source: keep the (1 - sparsity) largest of this model's own ResNet conv weights
  map backbone    the source's ResNet → this model's ResNet, whatever their prefixes (resnet_keys.py); an
                  RGB conv1 onto a 1-channel model: kept where kept in any channel, values summed (stem_channels.py)
  map shared      every tensor with the same name and shape (task → task, e.g. Mask → Keypoint R-CNN)

`record()` is what `RUN_DIR/init.json` holds: source, mode, map, what matched and what was dropped,
and the sparsity the transfer alone gives over the transferred tensors and over the whole network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ticketlab.config import Config
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet_keys import listing, map_resnet, pick_prefix
from ticketlab.models.stem_channels import ADAPTED_MASK, adapt_stem_ticket
from ticketlab.sparsity.level_files import check_level
from ticketlab.rundir import METRICS_FILE, START_FILE
from ticketlab.sparsity import full_mask, prunable_parameter_names, prune, sparsity_report


@dataclass
class Transfer:
    mask: dict[str, torch.Tensor]      # this model's parameter name → kept (bool)
    values: dict[str, torch.Tensor]    # this model's state key → start value (mode ticket only)
    info: dict = field(default_factory=dict)

    def record(self, model: nn.Module) -> dict:
        """`info` plus the sparsity of the transferred mask, over its tensors and over the network."""
        report = sparsity_report(model, self.mask)
        return {**self.info, "tensors": len(self.mask), "transferred_weights": report.scope_numel,
                "transferred_kept": report.scope_kept, "sparsity_transferred": report.scope_sparsity,
                "sparsity_network": report.network_sparsity}


def _read_source(source: Path, values: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The source level's mask and its trained (`final`) or start (`rewind`) weights, after the
    checks every reader of a level makes (`level_files.check_level`; the source's model is not built)."""
    where = f"init.source={source}"
    if not (source / METRICS_FILE).is_file():
        raise TicketlabError(f"{where}: expected a finished level directory (RUN_DIR/level_NN holding "
                             "metrics.json)")
    try:
        files = check_level(source)
    except TicketlabError as e:
        raise TicketlabError(f"{where}: {e}") from None
    state = files.final if values == "final" else files.rewind
    if state is None:
        raise TicketlabError(f"{where}: init.values rewind needs {source / START_FILE}, which is missing")
    return files.mask, state


def _shared_pairs(source: dict[str, torch.Tensor], own: dict[str, torch.Tensor], where: str) -> dict[str, str]:
    pairs = {k: k for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not pairs:
        raise TicketlabError(f"{where}: no tensor has the same name and shape in this model (map: shared)")
    return pairs


def _from_source(cfg: Config, model: nn.Module) -> Transfer:
    init = cfg.init
    source = Path(init.source)
    where = f"init.source={source}"
    src_mask, src_state = _read_source(source, init.values)
    own = model.state_dict()
    info: dict = {"source": str(source), "mode": init.mode, "map": init.map}
    adapted: list[str] = []
    if init.map == "backbone":
        keymap = map_resnet(src_state, own, where, adapt_input=True)
        pairs, adapted = keymap.pairs, keymap.adapted
        info.update(source_prefix=keymap.source_prefix, target_prefix=keymap.target_prefix)
    else:
        pairs = _shared_pairs(src_state, own, where)
    dropped = [k for k in src_state if k not in set(pairs.values())]
    mask = {t: src_mask[s].clone() for t, s in pairs.items() if s in src_mask}
    mask_dropped = sorted(set(src_mask) - {pairs[t] for t in mask})
    if not mask:
        raise TicketlabError(f"{where}: none of the source's masked tensors ({listing(sorted(src_mask))}) "
                             f"maps into this model (map: {init.map})")
    values = {t: src_state[s] for t, s in pairs.items()} if init.mode == "ticket" else {}
    for t in adapted:  # an RGB conv1 onto a 1-channel model (stem_channels.py)
        summed, kept = adapt_stem_ticket(src_state[pairs[t]], src_mask.get(pairs[t]), tuple(own[t].shape), where)
        if init.mode == "ticket":
            values[t] = summed
        if kept is not None:
            mask[t] = kept
        if init.mode == "ticket" or kept is not None:  # a mask alone of a source that masks no conv1 adapts nothing
            info.setdefault("adapted", {})[t] = ADAPTED_MASK
    if init.mode == "ticket":
        info["values"] = init.values
    info.update(matched=len(pairs), dropped=len(dropped), dropped_examples=dropped[:6],
                mask_dropped=mask_dropped)
    return Transfer(mask=mask, values=values, info=info)


def _by_magnitude(cfg: Config, model: nn.Module, seed: int) -> Transfer:
    """Paper 001 App. A: keep the largest (1 - sparsity) of this model's ResNet conv weights."""
    s = cfg.init.sparsity
    if not 0.0 < s < 1.0:
        raise TicketlabError(f"init.sparsity: mode magnitude needs a fraction in (0, 1), got {s}")
    prefix = pick_prefix(dict(model.state_dict()), "init (mode magnitude): this model")
    names = [n for n in prunable_parameter_names(model)
             if n.startswith(prefix) and not n[len(prefix):].startswith("fc.")]
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in names}
    mask = prune(cfg.prune.strategy, weights, full_mask(weights), s, torch.Generator().manual_seed(seed))
    info = {"source": None, "mode": "magnitude", "map": "backbone", "target_prefix": prefix,
            "strategy": cfg.prune.strategy, "sparsity": s}
    return Transfer(mask={n: m.cpu() for n, m in mask.items()}, values={}, info=info)


def plan_transfer(cfg: Config, model: nn.Module) -> Optional[Transfer]:
    """The transfer `cfg.init` asks for (None when it asks for none), checked against `model`."""
    init = cfg.init
    if init.mode == "magnitude":
        if init.source is not None:
            raise TicketlabError(f"init.source: mode magnitude takes no source (got {init.source})")
        return _by_magnitude(cfg, model, cfg.train.seed)
    if init.source is None:
        return None
    return _from_source(cfg, model)
