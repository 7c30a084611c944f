"""The relay's pure core: each frame's release time or loss, from the shaping and a seed."""

from __future__ import annotations

import random

import pytest

from keychain.testing.netns import FrameShaper, Shaping


def test_a_plain_delay_shifts_every_frame():
    shaper = FrameShaper(Shaping(delay=0.05), random.Random(1))
    assert [shaper.admit(t) for t in (0.0, 0.01, 1.0)] == [0.05, 0.060000000000000005, 1.05]


def test_jitter_stays_within_bounds_and_never_reorders():
    shaper = FrameShaper(Shaping(delay=0.05, jitter=0.04), random.Random(2))
    releases = [shaper.admit(i * 0.001) for i in range(500)]
    assert all(r is not None for r in releases)
    assert releases == sorted(releases)
    assert all(i * 0.001 + 0.01 - 1e-12 <= r for i, r in enumerate(releases))
    assert len({round(r - i * 0.001, 6) for i, r in enumerate(releases)}) > 50  # it does vary


def test_loss_follows_the_probability_and_the_seed():
    def fates(seed: int) -> list[bool]:
        shaper = FrameShaper(Shaping(loss=0.3), random.Random(seed))
        return [shaper.admit(0.0) is None for _ in range(2000)]

    lost = sum(fates(3))
    assert 500 <= lost <= 700
    assert fates(3) == fates(3)
    assert fates(3) != fates(4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"delay": -1}, "delay"), ({"delay": 0.01, "jitter": 0.02}, "jitter"), ({"loss": 2}, "loss")],
)
def test_bad_shaping_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Shaping(**kwargs)
