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


"""Fixtures of the real-libvirt tier: daemons, guest artifacts.

Every test gets fresh daemons below a unique directory; when a test fails
the daemons' libvirtd, QEMU, swtpm and guest console logs are printed
(pytest shows them under "Captured stdout teardown").
"""

import collections.abc
import os

import libvirt
import pytest

from tests.support.libvirt import daemons as daemons_mod
from tests.support.libvirt import guest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.stash.setdefault(_FAILED, []).append(report.when)


_FAILED = pytest.StashKey[list]()

# libvirt-python prints every error on stderr by default; the tests look
# at the exceptions.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


@pytest.fixture(scope='session')
def artifacts() -> guest.GuestArtifacts:
    """The self-checking guest's kernel and initramfs (cached)."""
    try:
        daemons_mod.check_prerequisites()
    except daemons_mod.LibvirtUnavailable as exc:
        pytest.skip(str(exc))
    return guest.ensure_artifacts()


@pytest.fixture
def libvirt_daemons(request) -> collections.abc.Iterator[
        daemons_mod.LibvirtDaemons]:
    """A :class:`LibvirtDaemons` fixture; logs are printed on failure."""
    # Checked before setUp(): fixtures wraps what _setUp raises into a
    # SetupError, which would turn the skip into an error.
    try:
        daemons_mod.check_prerequisites()
    except daemons_mod.LibvirtUnavailable as exc:
        pytest.skip(str(exc))
    fixture = daemons_mod.LibvirtDaemons()
    fixture.setUp()
    try:
        yield fixture
    finally:
        if request.node.stash.get(_FAILED, None):
            print(fixture.logs())
            for name in sorted(os.listdir(fixture.base)):
                if name.endswith('.log'):
                    path = os.path.join(fixture.base, name)
                    print(f'==== console {path}')
                    with open(path, errors='replace') as f:
                        print(f.read()[-4000:])
        fixture.cleanUp()
