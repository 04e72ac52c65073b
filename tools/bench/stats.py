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

"""Summary statistics for benchmark samples."""

import dataclasses
import math
import statistics


@dataclasses.dataclass(frozen=True)
class Summary:
    """Median, 95th percentile and extremes of a list of samples.

    :ivar n: number of samples.
    :ivar median: the median.
    :ivar p95: the 95th percentile (nearest-rank).
    :ivar minimum: the smallest sample.
    :ivar maximum: the largest sample.
    """

    n: int
    median: float
    p95: float
    minimum: float
    maximum: float

    def as_dict(self) -> dict[str, float]:
        """Return the summary as a JSON-friendly dictionary."""
        return dataclasses.asdict(self)


def percentile(samples: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of *samples*.

    :param samples: a non-empty list of numbers.
    :param fraction: the percentile as a fraction in ``(0, 1]``.
    :raises ValueError: if *samples* is empty or *fraction* out of range.
    """
    if not samples:
        raise ValueError('no samples')
    if not 0 < fraction <= 1:
        raise ValueError(f'fraction {fraction} not in (0, 1]')
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: list[float]) -> Summary:
    """Summarise *samples* (median, p95, min, max).

    :raises ValueError: if *samples* is empty.
    """
    if not samples:
        raise ValueError('no samples')
    return Summary(n=len(samples), median=statistics.median(samples),
                   p95=percentile(samples, 0.95), minimum=min(samples),
                   maximum=max(samples))


def ratio(numerator: float, denominator: float) -> float:
    """Return ``numerator / denominator``, or ``inf`` for a zero denominator.
    """
    if denominator == 0:
        return math.inf
    return numerator / denominator
