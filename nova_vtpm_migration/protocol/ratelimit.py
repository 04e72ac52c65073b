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

"""A token bucket: at most *rate* events per second, bursts of *rate*."""

import threading
import time
import typing as ty


class TokenBucket:
    """Thread-safe token bucket.

    :param rate: tokens added per second (and the bucket's size); ``0``
        means unlimited.
    :param clock: monotonic clock (tests pass their own).
    """

    def __init__(self, rate: float,
                 clock: ty.Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self._clock = clock
        self._tokens = self.rate
        self._last = clock()
        self._lock = threading.Lock()
        #: Events refused since the bucket was created.
        self.refused = 0

    def take(self) -> bool:
        """Take a token; return False (and count it) when none is left."""
        if self.rate <= 0:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens
                               + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.refused += 1
            return False
