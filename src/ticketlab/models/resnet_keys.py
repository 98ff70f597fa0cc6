"""Find the ResNet inside any state_dict and map its keys onto the ResNet inside a model.

Pretrained ResNets come in many wrappings: torchvision's plain keys (`conv1.weight`, `fc.weight`),
MoCo v2's `module.encoder_q.*` beside `encoder_k.*`, a `queue` and an MLP `fc.0/fc.2`, SimCLR
conversions under `encoder.*` or `backbone.*` with a `projector.*` head. And the ResNet a user wants
to fill is embedded under a prefix too: `` in a classifier, `backbone.body.` in a torchvision
R-CNN, `backbone.` in DeepLabV3. Rather than listing formats, a *ResNet prefix* is any P for which
both `P + "conv1.weight"` and `P + "layer1.0.conv1.weight"` exist; the trunk is every key under P
except the classifier `P + "fc.*"`. Mapping trunk to trunk by the key suffix then works for any pair
of wrappings, and the report says what was matched and what was dropped (heads, the momentum
encoder, the queue). A checkpoint of another depth or width fails with the mismatched keys listed.
A 3-channel (RGB) conv1 loads into a 1-channel model as its sum over the channels
(`models/stem_channels.py`), for `model.weights` and for a ticket or mask transfer (`adapt_input`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.stem_channels import ADAPTED, adapt_stem
from ticketlab.models.weights import load_state_into, load_weights_file

PROBES = ("conv1.weight", "layer1.0.conv1.weight")
HEAD = "fc."
COUNTER = "num_batches_tracked"
# Second copies of the encoder kept beside the one to use (MoCo's encoder_k, ticketlab's key_encoder,
# BYOL's target, EMA).
MOMENTUM_WORDS = ("encoder_k", "key_encoder", "momentum", "target", "ema", "teacher")
_LIST = 6


def listing(items: list[str], limit: int = _LIST) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit} more)" if len(items) > limit else "")


def resnet_prefixes(keys: Iterable[str]) -> list[str]:
    """Every prefix P ('' or ending in '.') under which `keys` hold a ResNet, in key order."""
    keys = list(keys)
    present = set(keys)
    found: list[str] = []
    for k in keys:
        if k.endswith(PROBES[0]):
            p = k[: -len(PROBES[0])]
            if (p == "" or p.endswith(".")) and p + PROBES[1] in present and p not in found:
                found.append(p)
    return found


def pick_prefix(keys: Iterable[str], where: str, prefix: Optional[str] = None) -> str:
    """The one ResNet prefix to use: `prefix` if given (checked), else the only candidate once
    momentum copies (MoCo's encoder_k, …) are set aside; several left is an error naming them."""
    found = resnet_prefixes(keys)
    if prefix is not None:
        prefix = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        if prefix not in found:
            raise TicketlabError(f"{where}: no ResNet under prefix {prefix!r} (found: {found or 'none'})")
        return prefix
    if not found:
        raise TicketlabError(f"{where}: no ResNet found (expected keys like conv1.weight and "
                             f"layer1.0.conv1.weight, under any prefix)")
    online = [p for p in found if not any(w in p for w in MOMENTUM_WORDS)] or found
    if len(online) > 1:
        raise TicketlabError(f"{where}: holds {len(online)} ResNets ({', '.join(repr(p) for p in online)}); "
                             "name the one to use (model.weights_prefix)")
    return online[0]


def trunk_suffixes(keys: Iterable[str], prefix: str) -> list[str]:
    """Keys under `prefix` with the prefix removed, the classifier head `fc.*` left out."""
    return [k[len(prefix):] for k in keys if k.startswith(prefix) and not k[len(prefix):].startswith(HEAD)]


@dataclass
class KeyMap:
    """How a source state_dict's ResNet lands in a target's: target key → source key, and the rest."""

    source_prefix: str
    target_prefix: str
    pairs: dict[str, str] = field(default_factory=dict)   # target key → source key
    dropped: list[str] = field(default_factory=list)      # source keys used nowhere (heads, encoder_k, …)
    adapted: list[str] = field(default_factory=list)      # target stems filled from an RGB conv1 (summed)

    def summary(self) -> dict:
        out = {"source_prefix": self.source_prefix, "target_prefix": self.target_prefix,
               "matched": len(self.pairs), "dropped": len(self.dropped),
               "dropped_examples": self.dropped[:_LIST]}
        if self.adapted:
            out["adapted"] = {k: ADAPTED for k in self.adapted}
        return out

    def apply(self, source: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The target-keyed tensors (only the mapped ones; adapted stems summed over RGB)."""
        out = {t: source[s] for t, s in self.pairs.items()}
        for t in self.adapted:
            out[t] = out[t].sum(dim=1, keepdim=True)
        return out


def map_resnet(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], where: str, *,
               source_prefix: Optional[str] = None, target_prefix: Optional[str] = None,
               adapt_input: bool = False) -> KeyMap:
    """Match the ResNet trunk of `source` onto the ResNet trunk of `target` (both name → tensor).

    Every target trunk key must be filled and every source trunk key must land, with equal shapes;
    BatchNorm's `num_batches_tracked` may be absent on either side (FrozenBatchNorm2d has none).
    With `adapt_input`, an RGB conv1 may fill a 1-channel one (summed, `stem_channels.py`).
    Otherwise one TicketlabError lists the missing, unexpected and mis-shaped keys.
    """
    sp = pick_prefix(source, where, source_prefix)
    tp = pick_prefix(target, "target model", target_prefix)
    src = trunk_suffixes(source, sp)
    tgt = set(trunk_suffixes(target, tp))
    missing = sorted(s for s in tgt - set(src) if not s.endswith(COUNTER))
    unexpected = [s for s in src if s not in tgt and not s.endswith(COUNTER)]
    adapted = [tp + PROBES[0]] if adapt_input and PROBES[0] in tgt and adapt_stem(
        source[sp + PROBES[0]], tuple(target[tp + PROBES[0]].shape)) is not None else []
    shapes = [f"{s} {tuple(source[sp + s].shape)} vs model {tuple(target[tp + s].shape)}"
              for s in src if s in tgt and tuple(source[sp + s].shape) != tuple(target[tp + s].shape)
              and tp + s not in adapted]
    if missing or unexpected or shapes:
        parts = [f"{label} {len(keys)}: {listing(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if keys]
        stem = adapt_input and any(x.startswith(PROBES[0] + " ") for x in shapes)
        raise TicketlabError(f"{where}: ResNet under {sp!r} does not fit the model's under {tp!r} "
                             f"(other depth or width?) — " + "; ".join(parts)
                             + (" (an RGB conv1 adapts only to a 1-channel one)" if stem else ""))
    pairs = {tp + s: sp + s for s in src if s in tgt}
    used = set(pairs.values())
    return KeyMap(sp, tp, pairs, dropped=[k for k in source if k not in used], adapted=adapted)


def load_model_weights(module: nn.Module, path: str | Path, *, new_modules: Iterable[str] = (),
                       prefix: Optional[str] = None) -> dict:
    """`model.weights` for any model: `load_state_weights` on the file's state_dict."""
    return load_state_weights(module, load_weights_file(path), path, new_modules=new_modules, prefix=prefix)


def _adapt_own_stems(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> list[str]:
    """In a state_dict of the model's own layout, sum each RGB ResNet conv1 that meets a 1-channel one
    (in place); the adapted keys."""
    adapted = []
    for p in resnet_prefixes(own):
        key = p + PROBES[0]
        if key in state and tuple(state[key].shape) != tuple(own[key].shape):
            summed = adapt_stem(state[key], tuple(own[key].shape))
            if summed is not None:
                state[key] = summed
                adapted.append(key)
    return adapted


def load_state_weights(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, *,
                       new_modules: Iterable[str] = (), prefix: Optional[str] = None) -> dict:
    """Load a weights file's `state`: a state_dict of this very model loads as-is (keys under
    `new_modules`, e.g. a classifier's `fc`, may be absent or of another size); anything else is
    searched for a ResNet (under `prefix` when given), whose trunk fills the model's; when the file or
    the model holds no ResNet, the keys that do not fit are listed. Either way an RGB conv1 fills a
    1-channel one (summed over RGB). Returns what was matched, adapted and dropped."""
    own = module.state_dict()
    if all(k in own for k in state) or not (resnet_prefixes(state) and resnet_prefixes(own)):
        # this model's own layout, or nothing to map: a strict load says which keys do not fit
        state = dict(state)
        adapted = _adapt_own_stems(state, own)
        report = load_state_into(module, state, path, strict=True, new_modules=new_modules)
        out = {"format": "state_dict", "matched": len(state) - len(report.mismatched), "dropped": 0,
               "missing": len(report.missing)}
        return {**out, "adapted": {k: ADAPTED for k in adapted}} if adapted else out
    keymap = map_resnet(state, own, f"model.weights={path}", source_prefix=prefix, adapt_input=True)
    module.load_state_dict(keymap.apply(state), strict=False)
    return {"format": "resnet", **keymap.summary()}
