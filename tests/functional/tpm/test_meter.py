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

"""The TCTI meter counts exactly the commands that reach the TPM (swtpm)."""

import pathlib
import shutil

import pytest
import tpm2_pytss
from tpm2_pytss import constants

from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import meter
from nova_vtpm_migration.tpm import profiles
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import PCRS
from tests.functional.swtpm_fixtures import SimHost

_TR = constants.ESYS_TR

#: One HostTpm.quote() once the connection is open: the quote and one
#: PCR_Read (6 PCRs fit one read). No handle scan at block entry or exit
#: and no ReadPublic of the persistent AK (read once per connection).
QUOTE_BLOCK = {'Quote': 1, 'PCR_Read': 1}


def _warm(sim: SimHost) -> None:
    # The AK is created on first use, and libtpms answers the first
    # Quote after persisting it with TPM_RC_RETRY (ESAPI resends it).
    sim.tpm.identity()
    sim.tpm.quote(b'warm-up')


def test_quote_block_sends_exactly_these_commands(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    _warm(a)
    with a.ctx.meter.window() as w:
        a.tpm.quote(b'n')
    print('quote block:', w.result.as_dict())
    assert w.result.counts == QUOTE_BLOCK
    assert w.result.failed == 0
    assert w.result.total == sum(QUOTE_BLOCK.values())
    assert w.result.total_seconds > 0


def test_block_entry_and_exit_send_nothing(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    with a.ctx.esys():
        pass   # connect (and its leftover scan) happens here if needed
    with a.ctx.meter.window() as w:
        with a.ctx.esys():
            pass
    assert w.result.total == 0
    with a.ctx.esys():
        with a.ctx.meter.window() as nested:
            with a.ctx.esys():
                pass
    assert nested.result.total == 0
    # What a block loads, also through the raw context, is flushed at
    # its end without asking the TPM for its handle list.
    with a.ctx.meter.window() as raw:
        with a.ctx.esys() as e:
            e.raw.start_auth_session(_TR.NONE, _TR.NONE,
                                     constants.TPM2_SE.HMAC, None,
                                     constants.TPM2_ALG.SHA256)
    assert raw.result.counts == {'StartAuthSession': 1, 'FlushContext': 1}
    assert context.loaded_handles(a.ctx) == set()


def test_calls_that_send_nothing_are_not_counted(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    with a.ctx.esys() as e:
        with a.ctx.meter.window() as started:
            s = e.start_auth_session(_TR.NONE, _TR.NONE,
                                     constants.TPM2_SE.HMAC, None,
                                     constants.TPM2_ALG.SHA256)
        with a.ctx.meter.window() as nothing:
            e.trsess_set_attributes(
                s, constants.TPMA_SESSION.CONTINUESESSION)
            e.tr_set_auth(_TR.OWNER, b'')
            e.tr_get_name(s)
        with a.ctx.meter.window() as flushed:
            e.raw.flush_context(s)   # the raw ESAPI context
    assert started.result.class_counts == {'StartAuthSession/unsalted': 1}
    assert nothing.result.total == 0
    assert flushed.result.counts == {'FlushContext': 1}


def test_failed_commands_are_counted(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    with a.ctx.esys() as e:
        with a.ctx.meter.window() as w:
            with pytest.raises(errors.TpmCommandError):
                e.tr_from_tpmpublic(0x81777777)
    assert w.result.counts == {'ReadPublic': 1}
    assert w.result.failed == 1


def test_windows_per_host(host_pair: tuple[SimHost, SimHost]) -> None:
    a, b = host_pair
    _warm(b)
    # Contexts on one TCTI share the TPM's meter.
    assert context.TpmContext(a.ctx.tcti).meter is a.ctx.meter
    assert a.ctx.meter is not b.ctx.meter
    with meter.measure({'a': a.ctx.meter, 'b': b.ctx.meter}) as m:
        a.tpm.pcr_values()
        b.tpm.quote(b'1')
        b.tpm.quote(b'2')
    assert m.labels == ['a', 'b']
    assert m['a'].counts == {'PCR_Read': 1}
    assert m['b'].counts == {k: 2 * v for k, v in QUOTE_BLOCK.items()}
    assert 'GetCapability' not in m.total.counts
    assert m.total.total == m['a'].total + m['b'].total


def test_creates_are_classified(host_pair: tuple[SimHost, SimHost]
                                ) -> None:
    a, _ = host_pair
    a.tpm.identity()
    a.ctx.release()   # the salted sessions are started in the window
    with a.ctx.meter.window() as w:
        a.tpm.unseal(a.tpm.seal(b'secret'))
        a.tpm.activate_credential(
            verify.make_credential(a.tpm.identity(), b'c' * 32))
    classes = w.result.class_counts
    print('seal+unseal+activate:', classes)
    assert classes['Create/KEYEDHASH'] == 1
    assert classes['StartAuthSession/salted'] == 2
    assert classes['ActivateCredential/RSA'] == 1   # swtpm's L-1 EK
    assert classes['StartAuthSession/unsalted'] == 1   # PolicySecret


def test_meter_wraps_any_tcti(swtpm_factory: object) -> None:
    """MeteredTcti only uses the TCTI interface: wrapped around another
    Python TCTI (itself around swtpm's), both count the same."""
    sim = swtpm_factory('wrap')  # type: ignore[operator]
    inner_meter, outer_meter = meter.TpmMeter(), meter.TpmMeter()
    inner = meter.MeteredTcti(tpm2_pytss.TCTILdr.parse(sim.swtpm.tcti),
                              inner_meter)
    outer = meter.MeteredTcti(inner, outer_meter)
    esapi = tpm2_pytss.ESAPI(outer)
    try:
        esapi.get_random(8)
        esapi.get_capability(constants.TPM2_CAP.HANDLES,
                             constants.TPM2_HC.TRANSIENT_FIRST, 8)
    finally:
        esapi.close()
        outer.close()
    assert outer_meter.snapshot().counts == {'GetCapability': 1,
                                             'GetRandom': 1}
    assert inner_meter.snapshot().counts == outer_meter.snapshot().counts


@pytest.mark.skipif(shutil.which('socat') is None
                    or not tpm2_pytss.TCTILdr.is_available('cmd'),
                    reason='needs socat and the tpm2-tss cmd TCTI')
def test_meter_over_a_byte_stream(swtpm_factory: object,
                                  tmp_path: pathlib.Path) -> None:
    """Through the ``cmd:`` TCTI (a child's stdin/stdout: a plain byte
    stream, as ``device:/dev/tpm0`` is) the meter sees the same commands.
    """
    sim = swtpm_factory('stream')  # type: ignore[operator]
    # Swtpm serves one connection at a time; this context is the
    # only user of this swtpm until it is closed.
    ctx = context.TpmContext(
        f'cmd:socat - TCP:127.0.0.1:{sim.swtpm.port}', lock_timeout=10)
    try:
        tpm = host_mod.HostTpm(ctx, tmp_path, pcr_selection=PCRS)
        tpm.identity()
        tpm.quote(b'warm-up')
        with ctx.meter.window() as w:
            tpm.quote(b'n')
    finally:
        ctx.close()
    assert w.result.counts == QUOTE_BLOCK


def test_latency_profile_delays_commands(swtpm_factory: object) -> None:
    sim = swtpm_factory('slow')  # type: ignore[operator]
    ctx = context.TpmContext(sim.swtpm.tcti, latency_profile='ftpm')
    try:
        with ctx.esys():
            pass
        with ctx.meter.window() as w:
            with ctx.esys() as e:
                e.get_random(8)
    finally:
        ctx.meter.set_latency_profile(None)
        ctx.close()
    stat = w.result.classes['GetRandom']
    figure = profiles.FTPM.figure('GetRandom').ms / 1000.0
    print(f'GetRandom on ftpm: {stat.seconds * 1000:.2f} ms, of which '
          f'{stat.delay * 1000:.2f} ms injected')
    assert stat.count == 1 and stat.delay > 0
    assert stat.seconds >= figure
    # Projection without sleeping gives the same figures.
    projected = profiles.project('ftpm', w.result.class_counts)
    assert projected.ms == pytest.approx(figure * 1000)
