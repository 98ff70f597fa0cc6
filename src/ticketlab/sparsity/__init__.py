"""Pure tensor math on masks: scopes, magnitude selection, enforcement, reports and mask files.

A mask is `dict[str, torch.BoolTensor]`: parameter name → bool tensor of the parameter's shape,
True = kept. This package knows nothing of data or training; `lottery/` composes it with them.
"""

from ticketlab.sparsity.enforce import MaskEnforcer
from ticketlab.sparsity.mask_io import (
    import_open_lth,
    import_torch_prune,
    load_any_mask,
    load_mask,
    save_mask,
)
from ticketlab.sparsity.report import GroupRow, SparsityReport, TensorRow, sparsity_report
from ticketlab.sparsity.scope import group_of, prunable_parameter_names, resolve_scope
from ticketlab.sparsity.select import kept_count, prune_smallest
from ticketlab.sparsity import pruning_at_init  # noqa: F401  registers snip, grasp, synflow
from ticketlab.sparsity.strategies import (
    STRATEGIES,
    Mask,
    complement,
    full_mask,
    perturb,
    prune,
    prune_global,
    prune_layerwise,
    prune_random,
    random_mask_like,
)

__all__ = [
    "MaskEnforcer", "import_open_lth", "import_torch_prune", "load_any_mask", "load_mask", "save_mask",
    "GroupRow", "SparsityReport", "TensorRow", "sparsity_report", "group_of", "prunable_parameter_names",
    "resolve_scope", "kept_count", "prune_smallest", "STRATEGIES", "Mask", "complement", "full_mask",
    "perturb", "prune", "prune_global", "prune_layerwise", "prune_random", "random_mask_like",
]
