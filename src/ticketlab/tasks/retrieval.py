"""Top-1 retrieval accuracy of two-branch embeddings (paper 002, App. A.2, Eq. 2).

Paper 002 scores its SimCLR and MoCo pre-training tasks by this number (Fig. 2, Fig. 12). For a
batch of n samples with branch-1 embeddings z_1..z_n and branch-2 embeddings z'_1..z'_n (z_i and z'_i
from two augmentations of sample i), each of the 2n views looks up its most cosine-similar view
among the other 2n - 1; the retrieval is correct when that is its partner (z'_i for z_i, z_i for
z'_i). Eq. 2 is the number of correct retrievals over 2n.

Ties (two candidates exactly as similar) go to the lower index (z before z', j before j + 1), as
`argmax` resolves them; Eq. 2 does not say.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ticketlab.errors import TicketlabError


def retrieval_hits(z: torch.Tensor, z_prime: torch.Tensor) -> int:
    """Number of correct top-1 retrievals among the 2n views of one batch (Eq. 2's numerator)."""
    if z.ndim != 2 or z.shape != z_prime.shape:
        raise TicketlabError(f"retrieval accuracy: expected two n×d embeddings of the same shape, got "
                             f"{tuple(z.shape)} and {tuple(z_prime.shape)}")
    n = z.shape[0]
    if n < 2:
        raise TicketlabError(f"retrieval accuracy: a batch needs at least 2 samples, got {n}")
    views = F.normalize(torch.cat([z, z_prime]).double(), dim=1)
    similarity = views @ views.T
    similarity.fill_diagonal_(float("-inf"))  # a view is not its own candidate (the "/ {z_i}" of D_i)
    arange = torch.arange(n, device=views.device)
    partner = torch.cat([arange + n, arange])
    return int((similarity.argmax(dim=1) == partner).sum())


def retrieval_accuracy(z: torch.Tensor, z_prime: torch.Tensor) -> float:
    """Eq. 2 of paper 002 for one batch, as a fraction (the paper prints it ×100%)."""
    return retrieval_hits(z, z_prime) / (2 * z.shape[0])
