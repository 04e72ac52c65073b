# Copyright 2026 The nova-vtpm-migration Authors
#
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

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
