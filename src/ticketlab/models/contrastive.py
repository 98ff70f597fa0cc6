"""Models of the self-supervised pre-training tasks of paper 002: SimCLR and MoCo v2.

Both are the classifier backbone with its `fc` replaced by the identity (its pooled features) plus
a projection MLP (Linear → ReLU → Linear, SimCLR's and MoCo v2's head). The backbone is stored
under `backbone.` with torchvision's ResNet names (`backbone.conv1.weight`,
`backbone.layer1.0.conv1.weight`, …), so a ticket found here transfers to a classifier or a
detector by stripping that prefix.

MoCo adds the momentum (key) encoder — a copy of backbone + projection under `key_encoder.`,
never optimised (requires_grad False), moved towards the query encoder by an EMA after every step —
and the queue of negative keys. Queue and pointer are buffers, so they are in the state dict:
checkpoints, resume and `final.safetensors` carry them. The key encoder follows the query
encoder's mask (`BuiltModel.followers`): with both zero at pruned positions the EMA keeps them zero.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.config import SSLConfig
from ticketlab.errors import TicketlabError
from ticketlab.models.spec import BuiltModel

BACKBONE = "backbone"
KEY_ENCODER = "key_encoder"


def projection_head(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features))


class ContrastiveModel(nn.Module):
    """backbone (features) → projection (embedding); `forward` returns the embedding."""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: SSLConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection_head(feature_dim, cfg.projection_hidden or feature_dim, cfg.projection_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (what kNN and the linear probe evaluate)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x))


class _Encoder(nn.Module):
    """The key encoder: the same two modules under the same names."""

    def __init__(self, backbone: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.backbone, self.projection = backbone, projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x))


class MoCoModel(ContrastiveModel):
    """ContrastiveModel (the query encoder) + momentum key encoder + queue of keys (MoCo v2)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: SSLConfig) -> None:
        super().__init__(backbone, feature_dim, cfg)
        if not 0.0 <= cfg.moco_momentum < 1.0:
            raise TicketlabError(f"ssl.moco_momentum: expected a number in [0, 1), got {cfg.moco_momentum}")
        if cfg.moco_queue < 1:
            raise TicketlabError(f"ssl.moco_queue: expected a positive integer, got {cfg.moco_queue}")
        self.momentum = cfg.moco_momentum
        self.key_encoder = _Encoder(copy.deepcopy(self.backbone), copy.deepcopy(self.projection))
        self.key_encoder.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.moco_queue, cfg.projection_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        query = [*self.backbone.parameters(), *self.projection.parameters()]
        return list(zip(self.key_encoder.parameters(), query))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key ← m·key + (1-m)·query, parameter by parameter (buffers such as BN statistics are the
        key encoder's own, as in MoCo)."""
        keys, queries = zip(*self._pairs())
        torch._foreach_mul_(keys, self.momentum)
        torch._foreach_add_(keys, queries, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the queue by `keys` (wrapping around its end)."""
        n, size = keys.shape[0], self.queue.shape[0]
        if n > size:
            keys, n = keys[-size:], size
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue.index_copy_(0, idx, keys.detach().to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.key_encoder(x)


def contrastive_model(built: BuiltModel, cfg: SSLConfig, task: str,
                      model_class: type[ContrastiveModel] = ContrastiveModel) -> BuiltModel:
    """Turn a built classifier into a `model_class` (ContrastiveModel, MoCoModel) for `task` (named
    in messages); groups get the `backbone.` prefix, plus `projection` (and MoCo's `key_encoder`,
    never in the default scope)."""
    module = built.module
    fc = getattr(module, "fc", None)
    if not isinstance(fc, nn.Linear) or "fc" not in built.groups:
        raise TicketlabError(f"task: {task} needs a classifier family with an `fc` layer (a ResNet, CIFAR "
                             "ResNet or LeNet), not this model.family")
    feature_dim = fc.in_features
    module.fc = nn.Identity()
    model = model_class(module, feature_dim, cfg)
    groups = {g: tuple(f"{BACKBONE}.{p}" for p in paths) for g, paths in built.groups.items() if g != "fc"}
    default_scope = list(groups)
    groups["projection"] = ("projection",)
    followers: dict[str, str] = {}
    if isinstance(model, MoCoModel):
        groups[KEY_ENCODER] = (KEY_ENCODER,)
        names = [n for n, _ in model.named_parameters() if not n.startswith(KEY_ENCODER + ".")]
        followers = {f"{KEY_ENCODER}.{n}": n for n in names}
    return BuiltModel(module=model, groups=groups, default_scope=default_scope, followers=followers)
