"""Shared fixtures: the three tiny architectures, loaded once per session."""

from __future__ import annotations

import pytest

from emoverify.lm.models import load_model

TINY = ("tiny:gpt2", "tiny:pythia", "tiny:gpt-neo")


@pytest.fixture(scope="session", params=TINY)
def tiny_lm(request):
    """Each tiny architecture in turn (2 layers, width 64), in eval mode on the CPU."""
    return load_model(request.param)
