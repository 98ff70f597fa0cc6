"""Deployment: a finished level as files other programs run — a plain torchvision state_dict,
TorchScript, ONNX, or a state_dict for CUDA's 2:4 kernels — optionally compacted, each checked
against the masked model it came from. Importing this package registers every export format.

Sits above `lottery/` (it reads level dirs through `build_experiment`), below `cli`.
"""

from ticketlab.deploy.compact import CompactionReport, compact
from ticketlab.deploy.export import ExportResult, export_level
from ticketlab.deploy import semi_structured  # noqa: F401  (registers --format semi_structured)
from ticketlab.deploy.ticket import Ticket, flat_outputs, load_ticket

__all__ = ["CompactionReport", "compact", "ExportResult", "export_level", "Ticket", "flat_outputs",
           "load_ticket"]
