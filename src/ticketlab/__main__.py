"""`python -m ticketlab` is the same as the `ticketlab` console script (torchrun needs a module)."""

from ticketlab.cli import entry

raise SystemExit(entry())
