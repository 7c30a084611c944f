"""Write gaps: the longest stretch without an acknowledged write, inside a fault's window and after it."""

from __future__ import annotations

import pytest

from keychain.testing.history import Operation
from keychain.testing.write_gaps import WriteGaps, longest_gap, write_gaps


def put(end: float, status: str = "ok") -> Operation:
    return Operation(client="w", op="put", key="k", value="v", start=end - 0.01,
                     end=None if status == "unknown" else end, status=status)  # type: ignore[arg-type]


def test_a_window_without_acknowledgements_is_one_gap_as_long_as_itself():
    assert longest_gap([0.5, 9.0], 1.0, 4.0) == 3.0


def test_the_longest_stretch_counts_the_window_edges():
    assert longest_gap([1.5, 2.0, 3.5], 1.0, 4.0) == 1.5  # 2.0 .. 3.5
    assert longest_gap([1.2], 1.0, 4.0) == pytest.approx(2.8)  # 1.2 .. the end


def test_only_acknowledged_writes_close_a_gap():
    history = [put(1.1), put(2.0, "unknown"), put(2.5, "fail"), put(3.0), put(4.2), put(4.4)]
    gaps = write_gaps(history, fault=1.0, healed=4.0, settled=5.0)
    assert gaps == WriteGaps(during=pytest.approx(1.9), after=pytest.approx(0.6))


def test_a_window_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        longest_gap([], 2.0, 1.0)
