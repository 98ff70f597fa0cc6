"""The rest of a SimCLR / MoCo checkpoint: projection MLP, MoCo's key encoder and queue.

`model.weights` fills the ResNet trunk wherever it sits (`resnet_keys.py`); for the pre-training
tasks themselves (paper 002 runs IMP on SimCLR and MoCo, restarting from the whole pre-trained
model) the parts around it load too, when the file holds them:

- **Projection MLP**: a numbered stack of Linear layers either inside the trunk's own `fc`
  (MoCo v2: `encoder_q.fc.0`, `encoder_q.fc.2`) or beside the trunk (`projection.*`, ticketlab's;
  `projector.*`, `projection_head.*`, `head.*`, `mlp.*`, common SimCLR ports). Its Linear layers fill
  this model's in order (Linear → ReLU → Linear) and must have the sizes `ssl.projection_hidden` /
  `ssl.projection_dim` give; a head with other layers (e.g. BatchNorm) is refused, naming them. A
  Linear stored without bias is the same map as one with bias 0, so the bias becomes 0. A single
  unnumbered `fc` is a classifier head (or MoCo v1's linear projection) and is not taken as the MLP.
- **Key encoder** (moco): the file's second, momentum ResNet (MoCo's `encoder_k`, ticketlab's
  `key_encoder.backbone`) and the head beside it; without one, the key encoder is a copy of the
  query encoder as loaded (MoCo's own start). The key head may be absent: then the query head's copy.
- **Queue** (moco): a 2-D `queue` of ssl.moco_queue keys of ssl.projection_dim, stored either way
  round (MoCo v2 keeps keys as columns, dim × K; ticketlab as rows, K × dim; when both fit, the axis
  of unit-norm keys decides), with its `queue_ptr`; loaded as stored (MoCo enqueues unit keys).

What loaded, from where, and what was still dropped goes to `init.json` (`weights.projection`,
`weights.key_encoder`, `weights.queue`).
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.contrastive import KEY_ENCODER, ContrastiveModel, MoCoModel
from ticketlab.models.resnet_keys import HEAD, MOMENTUM_WORDS, listing, map_resnet, resnet_prefixes, trunk_suffixes

SIBLING_HEADS = ("projection.", "projector.", "projection_head.", "head.", "mlp.")
QUEUE, QUEUE_PTR = "queue", "queue_ptr"
UNIT_TOLERANCE = 1e-3


def _parent(prefix: str) -> str:
    """`encoder_q.` → ``, `key_encoder.backbone.` → `key_encoder.`."""
    parts = prefix.rstrip(".").split(".")
    return ".".join(parts[:-1]) + "." if len(parts) > 1 else ""


def find_head(state: Mapping[str, torch.Tensor], trunk: str, where: str) -> Optional[str]:
    """The prefix of the numbered Linear stack serving as the projection head of the ResNet at
    `trunk`, or None when there is none."""
    numbered = re.compile(r"\d+\.weight")
    found = [h for h in (trunk + HEAD, *(_parent(trunk) + s for s in SIBLING_HEADS))
             if any(k.startswith(h) and numbered.fullmatch(k[len(h):]) for k in state)]
    if len(found) > 1:
        raise TicketlabError(f"{where}: {len(found)} projection heads beside the ResNet at {trunk!r} "
                             f"({', '.join(found)}); expected one")
    return found[0] if found else None


def _head_tensors(state: Mapping[str, torch.Tensor], head: str, target: nn.Sequential,
                  target_name: str, where: str) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(target-keyed tensors, source keys used, target biases set to 0) for a head under `head`."""
    keys = [k for k in state if k.startswith(head)]
    linear_weight = re.compile(r"(\d+)\.weight")
    layers = sorted(int(m.group(1)) for k in keys
                    if (m := linear_weight.fullmatch(k[len(head):])) and state[k].ndim == 2)
    allowed = {f"{head}{i}.{p}" for i in layers for p in ("weight", "bias")}
    other = [k for k in keys if k not in allowed]
    linears = [(i, m) for i, m in enumerate(target) if isinstance(m, nn.Linear)]
    mine = "→".join(str(m.in_features) for _, m in linears) + f"→{linears[-1][1].out_features}"
    if other:
        raise TicketlabError(f"{where}: the projection head under {head!r} has layers other than Linear "
                             f"({listing(other)}); this model's is Linear → ReLU → Linear ({mine})")
    shapes = [tuple(state[f"{head}{i}.weight"].shape) for i in layers]
    theirs = "→".join(str(s[1]) for s in shapes) + (f"→{shapes[-1][0]}" if shapes else "")
    if len(layers) != len(linears) or any(s != tuple(m.weight.shape) for s, (_, m) in zip(shapes, linears)):
        raise TicketlabError(f"{where}: the projection head under {head!r} ({theirs}) does not fit this "
                             f"model's ({mine}); set ssl.projection_hidden and ssl.projection_dim to its sizes")
    out, used, zeroed = {}, [], []
    for src, (j, m) in zip(layers, linears):
        out[f"{target_name}.{j}.weight"] = state[f"{head}{src}.weight"]
        used.append(f"{head}{src}.weight")
        bias = state.get(f"{head}{src}.bias")
        if bias is None:
            bias = torch.zeros(m.out_features)
            zeroed.append(f"{target_name}.{j}.bias")
        else:
            used.append(f"{head}{src}.bias")
        out[f"{target_name}.{j}.bias"] = bias
    return out, used, zeroed


def _queue(state: Mapping[str, torch.Tensor], model: MoCoModel, where: str) -> tuple[Optional[dict], list[str]]:
    """The file's queue as this model's (K × dim rows), or (None, []) when it has none."""
    key = next((k for k in state if k == QUEUE or k.endswith("." + QUEUE)), None)
    if key is None or state[key].ndim != 2:
        return None, []
    size, dim = model.queue.shape
    q = state[key].float()
    as_rows, as_cols = tuple(q.shape) == (size, dim), tuple(q.shape) == (dim, size)
    if as_rows and as_cols:  # square: the keys are the unit vectors
        as_rows = bool(torch.allclose(q.norm(dim=1), torch.ones(size), atol=UNIT_TOLERANCE))
    if not (as_rows or as_cols):
        raise TicketlabError(f"{where}: {key} has shape {tuple(q.shape)}; this model's queue holds "
                             f"ssl.moco_queue={size} keys of ssl.projection_dim={dim} (either way round)")
    rows = q if as_rows else q.T
    used = [key]
    ptr_key = key[: -len(QUEUE)] + QUEUE_PTR
    ptr = 0
    if ptr_key in state:
        ptr = int(state[ptr_key].reshape(-1)[0]) % size
        used.append(ptr_key)
    tensors = {QUEUE: rows.to(model.queue.dtype),
               QUEUE_PTR: torch.tensor(ptr, dtype=model.queue_ptr.dtype)}
    return {"tensors": tensors, "from": key, "layout": "keys as rows" if as_rows else "keys as columns (MoCo v2)"}, used


def load_contrastive_parts(model: ContrastiveModel, state: Mapping[str, torch.Tensor], where: str,
                           trunk_record: dict) -> dict:
    """Load the projection (and MoCo's key encoder and queue) from `state`, after its query ResNet
    went into the backbone as `trunk_record` (resnet_keys.load_state_weights's return) says.
    Returns the init.json record: projection, key_encoder, queue, and what is still dropped."""
    if trunk_record.get("format") == "resnet":
        trunk: Optional[str] = trunk_record["source_prefix"]
    else:  # the classifier's own layout: a ResNet at the top level, or none (LeNet)
        trunk = "" if "" in resnet_prefixes(state) else None
    used = {trunk + s for s in trunk_suffixes(state, trunk)} if trunk is not None else set()
    own = model.state_dict()
    record: dict = {}
    head = find_head(state, trunk, where) if trunk is not None else None
    if head is None:
        record["projection"] = "fresh (none in the file)"
    else:
        tensors, took, zeroed = _head_tensors(state, head, model.projection, "projection", where)
        model.load_state_dict(tensors, strict=False)
        used.update(took)
        record["projection"] = {"from": head, "layers": sum(1 for k in tensors if k.endswith(".weight")),
                                **({"bias_zero": zeroed} if zeroed else {})}
    if isinstance(model, MoCoModel):
        record.update(_load_moco_parts(model, state, where, trunk, used, own))
    dropped = [k for k in state if k not in used]
    record.update(dropped=len(dropped), dropped_examples=dropped[:6])
    return record


def _load_moco_parts(model: MoCoModel, state: Mapping[str, torch.Tensor], where: str, trunk: Optional[str],
                     used: set[str], own: Mapping[str, torch.Tensor]) -> dict:
    """Key encoder and queue (see the module docstring); updates `used`."""
    record: dict = {}
    momentum = [p for p in resnet_prefixes(state) if p != trunk and any(w in p for w in MOMENTUM_WORDS)]
    if len(momentum) > 1:
        raise TicketlabError(f"{where}: {len(momentum)} momentum ResNets ({', '.join(momentum)}); expected one "
                             "key encoder")
    # start from the query encoder as loaded: what the key encoder is when the file has none
    model.key_encoder.backbone.load_state_dict(model.backbone.state_dict())
    model.key_encoder.projection.load_state_dict(model.projection.state_dict())
    if not momentum:
        record["key_encoder"] = "copy of the query encoder (none in the file)"
    else:
        target = f"{KEY_ENCODER}.backbone."
        keymap = map_resnet(state, own, where, source_prefix=momentum[0], target_prefix=target, adapt_input=True)
        load = keymap.apply(state)
        used.update(keymap.pairs.values())
        head = find_head(state, momentum[0], where)
        if head is not None:
            tensors, took, _ = _head_tensors(state, head, model.key_encoder.projection,
                                             f"{KEY_ENCODER}.projection", where)
            load.update(tensors)
            used.update(took)
        model.load_state_dict(load, strict=False)
        record["key_encoder"] = {"from": momentum[0], "matched": len(keymap.pairs),
                                 "projection_from": head or "copy of the query projection"}
    queue, took = _queue(state, model, where)
    used.update(took)
    if queue is None:
        record["queue"] = "fresh (none in the file)"
    else:
        model.queue.copy_(queue["tensors"][QUEUE])
        model.queue_ptr.copy_(queue["tensors"][QUEUE_PTR])
        record["queue"] = {"from": queue["from"], "layout": queue["layout"], "ptr": int(model.queue_ptr)}
    return record
