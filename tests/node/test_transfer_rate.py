"""The pace of outgoing state transfers: the token bucket's decisions, with the time passed in."""

from __future__ import annotations

import pytest
from keychain.node import main as node_main
from keychain.node.transfer_rate import DEFAULT_TRANSFER_RATE_MB, MB, TokenBucket, transfer_bucket


def test_a_burst_goes_out_at_once_and_what_follows_waits_for_the_rate() -> None:
    bucket = TokenBucket(rate=1000, burst=500)
    assert bucket.take(300, now=10.0) == 0.0
    assert bucket.take(200, now=10.0) == 0.0  # the burst is spent
    assert bucket.take(100, now=10.0) == pytest.approx(0.1)  # 100 bytes at 1000 B/s
    # Sent at 10.1 as told: the next 100 bytes wait another 0.1 s.
    assert bucket.take(100, now=10.1) == pytest.approx(0.1)


def test_a_chunk_larger_than_the_burst_is_sent_whole_once_the_rate_covers_it() -> None:
    bucket = TokenBucket(rate=1000, burst=100)
    assert bucket.take(100, now=0.0) == 0.0
    assert bucket.take(2000, now=0.0) == pytest.approx(2.0)
    assert bucket.take(10, now=2.0) == pytest.approx(0.01)


def test_an_idle_bucket_refills_only_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=1000, burst=500)
    assert bucket.take(500, now=0.0) == 0.0
    assert bucket.take(500, now=100.0) == 0.0  # 100 s idle bought 500 bytes, not 100 000
    assert bucket.take(100, now=100.0) == pytest.approx(0.1)


def test_sending_as_told_never_exceeds_burst_plus_rate_times_elapsed() -> None:
    bucket = TokenBucket(rate=2500, burst=4096)
    now, sent, start = 5.0, 0, 5.0
    for size in [4096, 1, 3000, 8192, 17, 4096, 100, 9000] * 5:
        now += bucket.take(size, now)  # the sender waits what it is told, then sends
        sent += size
        assert sent <= 4096 + 2500 * (now - start) + 1e-6
        now += 0.01  # some work between chunks


def test_a_clock_that_steps_back_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=1000, burst=100)
    bucket.take(100, now=10.0)
    assert bucket.take(100, now=9.0) == pytest.approx(0.1)


def test_rate_zero_is_unlimited() -> None:
    bucket = transfer_bucket(0, burst_bytes=1)
    assert bucket.unlimited
    assert all(bucket.take(10 * MB, now=0.0) == 0.0 for _ in range(100))


def test_the_flag_is_in_megabytes_per_second() -> None:
    bucket = transfer_bucket(2.5, burst_bytes=1 << 20)
    assert (bucket.rate, bucket.burst) == (2_500_000, 1 << 20)


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        TokenBucket(rate=-1, burst=0)


def test_the_node_takes_its_rate_from_the_command_line() -> None:
    args = ["--id", "n1", "--listen", "127.0.0.1:0", "--data-dir", "d", "--chain", "c", "--static"]
    assert node_main.parser().parse_args([*args, "--transfer-rate-mb", "0"]).transfer_rate_mb == 0
    assert node_main.parser().parse_args(args).transfer_rate_mb == DEFAULT_TRANSFER_RATE_MB > 0
    for bad in ("-1", "nan", "inf", "fast"):
        with pytest.raises(SystemExit):
            node_main.parser().parse_args([*args, "--transfer-rate-mb", bad])
