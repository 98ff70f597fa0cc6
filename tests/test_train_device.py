"""Device choice and deterministic mode."""

import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.train import deterministic_mode, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(TicketlabError, match="train.device"):
        resolve_device("gpu")
    with pytest.raises(TicketlabError, match="cuda:99"):
        resolve_device("cuda:99")


def test_deterministic_mode_restores_the_global_flags():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_mode(False):
        assert torch.are_deterministic_algorithms_enabled() == before
