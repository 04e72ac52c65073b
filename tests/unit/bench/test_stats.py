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

"""Tests of the benchmark statistics."""

import math

import pytest

from tools.bench import stats


def test_summarize() -> None:
    s = stats.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.n, s.median, s.minimum, s.maximum) == (5, 3.0, 1.0, 5.0)
    assert s.p95 == 5.0


def test_percentile_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert stats.percentile(samples, 0.95) == 95.0
    assert stats.percentile(samples, 0.5) == 50.0
    assert stats.percentile([7.0], 0.95) == 7.0


@pytest.mark.parametrize('bad', [0.0, 1.5, -1.0])
def test_percentile_rejects_bad_fraction(bad: float) -> None:
    with pytest.raises(ValueError):
        stats.percentile([1.0], bad)


def test_empty_samples_rejected() -> None:
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratio() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert math.isinf(stats.ratio(1.0, 0.0))
