"""ticketlab: find, transfer and analyse lottery tickets in torchvision vision models."""

__version__ = "0.1.0"
