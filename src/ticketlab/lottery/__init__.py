"""Experiments composed from the layers below: IMP levels, rewinding, branches, run directories."""
