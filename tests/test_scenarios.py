# SPDX-License-Identifier: GPL-2.0-or-later
"""The stories of pymodel.scenarios: what each one observes, on the model and in C."""

from __future__ import annotations

import doctest
from functools import partial

import pytest

from recvmap.pymodel import scenarios
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout
from recvmap.qemu_ref import CLibrary
from recvmap.qemu_ref.ram import c_context

LAYOUTS = (LP64_LE, ILP32_LE, LP64_BE, ILP32_BE)


def test_docstring_examples() -> None:
    result = doctest.testmod(scenarios, raise_on_error=False)
    assert result.failed == 0 and result.attempted >= 3


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda x: x.name)
def test_precopy_stream(layout: Layout) -> None:
    r = scenarios.precopy_stream(layout=layout)
    assert r.received_pages == [0, 1, 2, 3, 5, 8, 9, 15]
    assert r.tests == [1 if p in r.received_pages else 0 for p in range(r.pages)]
    assert r.map_after_cleanup is False and r.second_cleanup == 0
    if not layout.big_endian:
        assert r.map_image[:2] == bytes([0b00101111, 0b10000011])


def test_postcopy_run() -> None:
    r = scenarios.postcopy_run()
    assert r.target_pages_per_host_page == 512
    assert r.after_place == list(range(0, 1024)) + list(range(1536, 2048))
    assert r.discard_results == [0, -1, -1]
    # host page 1 was discarded; the failing discards cleared page 1537 and all of page 3
    assert r.after_discards == list(range(0, 512))
    assert len(r.error_log) == 2
    assert "Unaligned start address" in r.error_log[0]
    assert "Overrun block 'mach-virt.ram'" in r.error_log[1]


def test_postcopy_refused() -> None:
    r = scenarios.postcopy_refused()
    assert r.supported is False
    assert r.error_log == ["Target page size bigger than host page size"]
    assert r.wrapped_offset == ((1 << 64) - 4096) >> 14
    assert scenarios.postcopy_refused(layout=ILP32_LE).wrapped_offset == ((1 << 32) - 4096) >> 14
    assert r.supported_with_12_bits is True


def test_postcopy_failure_and_recovery_every_layout_pair() -> None:
    f = scenarios.postcopy_failure()
    assert f.pages == 40
    assert f.received_pages == [*range(17), 20, 33, 39]
    assert f.missing_pages == [p for p in range(40) if p not in f.received_pages]
    for dst in LAYOUTS:
        for src in LAYOUTS:
            r = scenarios.recovery(destination=dst, source=src)
            assert r.missing_pages == f.missing_pages
            assert r.resent_pages == r.missing_pages and r.complete
            assert r.sent == 16 and len(r.stream) == 24


def test_recovery_stream_bytes() -> None:
    r = scenarios.recovery()
    # pages 0..16, 20, 33, 39 received: ff ff 11 00 82 00 00 00
    assert r.stream.hex() == "0000000000000008" + "ffff110082000000" + "0123456789abcdef"


def c_make(lib: CLibrary):  # type: ignore[no-untyped-def]
    return partial(c_context, lib=lib)


def test_c_runs_the_same_stories(lib: CLibrary) -> None:
    make = c_make(lib)
    layout = lib.layout
    assert scenarios.precopy_stream(make, layout) == scenarios.precopy_stream(layout=layout)
    assert scenarios.postcopy_run(make, layout) == scenarios.postcopy_run(layout=layout)
    assert scenarios.postcopy_failure(make, layout) == scenarios.postcopy_failure(layout=layout)
    assert scenarios.recovery(make, layout, layout) == scenarios.recovery(
        destination=layout, source=layout
    )
    assert scenarios.postcopy_refused(make, layout) == scenarios.postcopy_refused(layout=layout)
