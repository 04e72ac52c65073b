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

"""Version and suite choice: only the best common one is accepted."""

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages

SUITE = messages.SUITE
V = messages.VERSION


def _body(versions: list[int], version: int, suites: list[str] | None = None,
          suite: str = SUITE) -> dict[str, object]:
    return {'versions': versions, 'version': version,
            'suites': suites or [SUITE], 'suite': suite}


def test_best_common_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    handshake._check_choice(_body([V], V))
    monkeypatch.setattr(messages, 'SUPPORTED_VERSIONS', (1, 2))
    handshake._check_choice(_body([1, 2, 3], 2))
    handshake._check_choice(_body([1], 1))


@pytest.mark.parametrize('body', [_body([1, 2], 1), _body([3], 3),
                                  _body([1, 2], 3)])
def test_downgrade_or_unknown_refused(monkeypatch: pytest.MonkeyPatch,
                                      body: dict[str, object]) -> None:
    monkeypatch.setattr(messages, 'SUPPORTED_VERSIONS', (1, 2))
    with pytest.raises(errors.UnsupportedVersion):
        handshake._check_choice(body)


def test_suite_refused() -> None:
    with pytest.raises(errors.UnsupportedSuite):
        handshake._check_choice(_body([V], V, ['weak', SUITE], 'weak'))
    with pytest.raises(errors.UnsupportedSuite):
        handshake._check_choice(_body([V], V, ['weak'], 'weak'))
