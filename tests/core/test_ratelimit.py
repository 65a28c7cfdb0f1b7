"""Per-source token buckets with a fake clock."""

from __future__ import annotations

from lispnet.core.ratelimit import TokenBucketLimiter


def test_burst_then_refill() -> None:
    rl = TokenBucketLimiter(rate=10.0, burst=5)
    assert all(rl.allow("a", 0.0) for _ in range(5))
    assert not rl.allow("a", 0.0)
    assert rl.allow("b", 0.0)  # another source is not affected
    assert not rl.allow("a", 0.05)  # half a token
    assert rl.allow("a", 0.1)
    assert rl.tokens("a", 100.0) == 5
    assert rl.limited == 2 and rl.allowed == 7


def test_disabled() -> None:
    rl = TokenBucketLimiter(rate=0, burst=0)
    assert all(rl.allow("a", 0.0) for _ in range(1000))


def test_bounded_sources() -> None:
    rl = TokenBucketLimiter(rate=1.0, burst=2, max_sources=64)
    for i in range(10_000):
        rl.allow(i, 0.0)
        assert len(rl) <= 64
