# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared fixtures: our C libraries for both word widths, paired with the model."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.qemu_ref import CLibrary, load

settings.register_profile(
    "recvmap",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    max_examples=int(os.environ.get("RECVMAP_EXAMPLES", "150")),
)
settings.load_profile("recvmap")

WIDTHS = (64, 32)


@pytest.fixture(scope="session", params=WIDTHS, ids=lambda b: f"{b}bit")
def lib(request: pytest.FixtureRequest) -> CLibrary:
    return load(bits=request.param)


@pytest.fixture(scope="session")
def pair(lib: CLibrary) -> tuple[ModelImpl, CImpl]:
    return ModelImpl(lib.layout), CImpl(lib)
