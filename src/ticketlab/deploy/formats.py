"""What an export format is: how it writes a ticket, and what it needs of the ticket and the options.

Each format declares this where it is registered (`EXPORT_FORMATS.register(name, ExportFormat(...))`,
in the file that writes it), and `export.py` reads only the declaration: no code outside a format's
own file compares its name. The declaration also tells the tests which ticket a format refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ticketlab.deploy.ticket import Ticket
from ticketlab.registry import MODEL_FAMILIES

# (model to write, its ticket, the file's path) → (the file's bytes, the outputs of the file loaded back
# with its runtime, that runtime's name)
Writer = Callable[[nn.Module, Ticket, Path], tuple[bytes, list[torch.Tensor], str]]
Notes = Callable[[nn.Module, Ticket], list[str]]

# What --compact may remove, per format:
COMPACT_ALL = "all"            # a channel ticket's removed channels, then every provably inert hidden channel
COMPACT_CHANNELS = "channels"  # a channel ticket's removed channels only: the file loads into a rebuilt architecture
COMPACT_NONE = "none"          # nothing: the file keeps the ticket's own layer shapes
COMPACT_MODES = (COMPACT_ALL, COMPACT_CHANNELS, COMPACT_NONE)


def no_notes(model: nn.Module, ticket: Ticket) -> list[str]:
    return []


def architecture_note(model: nn.Module, ticket: Ticket) -> list[str]:
    """Which stock model an exported state_dict loads into, or why none does (the family's word)."""
    return [MODEL_FAMILIES.get(ticket.cfg.model.family).export_note(ticket.cfg.model, ticket.experiment.data)]


@dataclass(frozen=True)
class ExportFormat:
    """One `ticketlab export --format` value."""

    write: Writer
    suffix: str                                    # the default file name's ending
    compact: str = COMPACT_ALL                     # what --compact may remove (COMPACT_MODES)
    csr_box_head: bool = False                     # whether --csr-box-head's CSR layers can be in the file
    granularities: Optional[tuple[str, ...]] = None  # the prune.granularity values it takes; None: any
    notes: Notes = no_notes                        # lines printed after the file is written

    def __post_init__(self) -> None:
        if self.compact not in COMPACT_MODES:
            raise ValueError(f"ExportFormat.compact: {self.compact!r} is not one of {', '.join(COMPACT_MODES)}")

    def refusal(self, granularity: str) -> Optional[str]:
        """Why a ticket of `prune.granularity` `granularity` cannot be written in this format, or None."""
        if self.granularities is None or granularity in self.granularities:
            return None
        return (f"takes tickets of prune.granularity {' or '.join(self.granularities)}, "
                f"not prune.granularity {granularity}")
