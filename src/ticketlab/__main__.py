"""`python -m ticketlab` is the same as the `ticketlab` console script (torchrun needs a module)."""

from ticketlab.cli import main

raise SystemExit(main())
