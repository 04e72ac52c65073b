"""The token bucket that limits incoming handshakes."""

from nova_vtpm_migration.protocol import ratelimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    clock = Clock()
    bucket = ratelimit.TokenBucket(5, clock=clock)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.refused == 2
    clock.now += 0.2           # one token back
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 10            # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 5


def test_zero_is_unlimited() -> None:
    bucket = ratelimit.TokenBucket(0, clock=Clock())
    assert all(bucket.take() for _ in range(10_000))
    assert bucket.refused == 0
