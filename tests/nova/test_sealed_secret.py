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

"""The vTPM secret of protected instances is sealed at rest.

``[vtpm_migration] libvirt_secret_storage = sealed`` (the default): no
persistent plaintext libvirt secret on any host; the secret lives in the
host's vault, sealed to its TPM, and libvirt gets an ephemeral, private
secret only while it starts the guest's swtpm -- at boot, hard reboot (as
admin too), resume after a host reboot and incoming live migration.
Real nova-api, conductor, scheduler, placement and libvirt-driver computes
(fake libvirt), with a real swtpm host TPM per compute.
"""

import pathlib

from nova import utils

from tests.nova import base
from tests.nova import fixtures as vtpm_fixtures


class SealedSecretTest(base.VtpmServersBase):

    def _boot(self, hostname='src'):
        self.start_compute(hostname)
        server = self.create_vtpm_server()
        self.secret_uuid = self.instance(server).system_metadata[
            'vtpm_secret_uuid']
        return server

    def _km_secret(self):
        passphrase = self.key_mgr._passphrases[self.secret_uuid]
        return passphrase.get_encoded()

    def _break_key_manager(self):
        """Any further key manager read fails (as for an admin context)."""
        def refuse(context, managed_object_id):
            raise AssertionError('the key manager was asked for the secret')
        self.key_mgr.get = refuse

    def assert_sealed(self, hostname, server):
        """The host's vault holds the secret; libvirt holds none (that the
        one it had was ephemeral and private is checked on real daemons,
        tests/nova/real_libvirt)."""
        self.assertEqual(self._km_secret(),
                         self.held_secret(hostname, server))
        self.assertEqual([], self.libvirt_secrets(hostname))
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys(hostname))
        self.assert_not_on_disk(hostname, self._km_secret())

    def assert_not_on_disk(self, hostname, secret):
        state = pathlib.Path(self.host_tpms.state_dir(hostname))
        files = [p for p in state.rglob('*') if p.is_file()]
        self.assertTrue(files, 'no plugin state on disk: scan is broken')
        for form in vtpm_fixtures.secret_encodings(secret):
            needle = form.encode() if isinstance(form, str) else form
            for path in files:
                self.assertNotIn(needle, path.read_bytes(), str(path))

    def test_boot_keeps_the_secret_sealed(self):
        server = self._boot()
        self.assert_sealed('src', server)
        self.assert_no_leak(self._km_secret())

    def test_scan_finds_a_plaintext_secret(self):
        """Control: the on-disk scan fails when the secret is on disk."""
        server = self._boot()
        leak = pathlib.Path(self.host_tpms.state_dir('src')) / 'leak'
        leak.write_bytes(b'x' + self._km_secret())
        self.assertRaises(AssertionError, self.assert_sealed, 'src', server)

    def test_hard_reboot_as_admin_opens_the_vault(self):
        """Upstream needs the persistent libvirt secret for this (an admin
        cannot read the user's key manager secret); the vault serves it."""
        server = self._boot()
        self._break_key_manager()

        self._reboot_server(server, hard=True, api=self.admin_api)

        self.assertEqual([server['id']], self.domains('src'))
        self.assertEqual('ACTIVE',
                         self.admin_api.get_server(server['id'])['status'])
        self.assert_sealed('src', server)

    def test_resume_after_host_reboot(self):
        """The host reboots: libvirt forgot every secret and domain; the
        compute resumes the guest from the vault."""
        self.flags(resume_guests_state_on_host_boot=True)
        server = self._boot()
        self._break_key_manager()

        self.restart_compute_service('src', keep_hypervisor_state=False)

        self.assertEqual([server['id']], self.domains('src'))
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        self.assert_sealed('src', server)

    def test_host_booted_other_software_cannot_resume(self):
        """Attack: the host comes back with another boot chain (PCR 7).
        The TPM refuses to unseal the key, so the guest's vTPM secret is
        never released and the guest does not start."""
        self.flags(resume_guests_state_on_host_boot=True)
        server = self._boot()
        self.make_untrusted('src')

        self.restart_compute_service('src', keep_hypervisor_state=False)

        self.assertEqual([], self.domains('src'))
        self.assertEqual([], self.libvirt_secrets('src'))
        self.assertIn('the host TPM does not unseal its key', self.logs.text)
        self.assertEqual(
            'ERROR', self.admin_api.get_server(server['id'])['status'])

    def test_persistent_secret_moves_into_the_vault(self):
        """An instance booted with upstream semantics (``libvirt``
        storage) loses its persistent libvirt secret at its next start."""
        self.flags(libvirt_secret_storage='libvirt', group='vtpm_migration')
        server = self._boot()
        self.assertEqual(self._km_secret(),
                         self.libvirt_secret('src', server))
        self.flags(libvirt_secret_storage='sealed', group='vtpm_migration')
        self._break_key_manager()

        self._reboot_server(server, hard=True, api=self.admin_api)

        self.assertIsNone(self.libvirt_secret('src', server))
        self.assert_sealed('src', server)

    def test_switching_back_to_libvirt_storage(self):
        """``libvirt`` storage after ``sealed`` (e.g. before removing the
        plugin): the next start gives libvirt a persistent secret again
        and the vault forgets it."""
        server = self._boot()
        self.flags(libvirt_secret_storage='libvirt', group='vtpm_migration')
        self._break_key_manager()

        self._reboot_server(server, hard=True, api=self.admin_api)

        self.assertEqual(self._km_secret(),
                         self.libvirt_secret('src', server))
        self.assertEqual({}, self.keys('src'))
        self.assertEqual([], self.engines.adapters['src'].vault.instances())

    def test_delete_destroys_the_sealed_copy(self):
        server = self._boot()
        vault = self.engines.adapters['src'].vault
        self.assertEqual([server['id']], vault.instances())

        self._delete_server(server)

        self.assertEqual({}, self.keys('src'))
        self.assertEqual([], vault.instances())

    def test_deleted_while_compute_down_is_forgotten_at_start(self):
        """Nova's API deletes the instance locally while its compute is
        down; the compute's next start destroys the sealed copy."""
        server = self._boot()
        vault = self.engines.adapters['src'].vault
        self.computes['src'].stop()
        with utils.temporary_mutation(self.admin_api, microversion='2.53'):
            self.admin_api.put_service(
                self.computes['src'].service_ref.uuid, {'forced_down': True})
        self._delete_server(server)
        self.assertEqual([server['id']], vault.instances())

        self.restart_compute_service('src', keep_hypervisor_state=False)

        self.assertEqual({}, self.keys('src'))
        self.assertEqual([], self.engines.adapters['src'].vault.instances())
        self.assertIn('deleted while host src was down', self.logs.text)

    def test_migrated_guest_restarts_from_the_destination_vault(self):
        """After a move the destination can restart the guest on its own;
        the source has nothing left. Moving back works the same way."""
        server = self._boot()
        self.start_compute('dest')
        self._break_key_manager()

        # LibvirtMigrationMixin moves self.server from self.src to self.dest.
        self.src, self.dest = self.computes['src'], self.computes['dest']
        self.server = server
        self._live_migrate(server, api=self.admin_api, host='dest')
        self.assertEqual('dest', self.server_host(server))
        self.assertEqual({}, self.keys('src'))
        self.assertEqual([], self.engines.adapters['src'].vault.instances())
        self._reboot_server(server, hard=True, api=self.admin_api)
        self.assert_sealed('dest', server)

        self.src, self.dest = self.dest, self.src
        self._live_migrate(server, api=self.admin_api, host='src')
        self.assertEqual('src', self.server_host(server))
        self.assertEqual({}, self.keys('dest'))
        self._reboot_server(server, hard=True, api=self.admin_api)
        self.assert_sealed('src', server)
        self.assert_no_leak(self._km_secret())


class LibvirtStorageTest(base.VtpmServersBase):
    """``libvirt_secret_storage = libvirt``: upstream ``host`` semantics,
    with the secret still moving only wrapped by the protocol."""

    def test_persistent_secret_and_wrapped_move(self):
        self.flags(libvirt_secret_storage='libvirt', group='vtpm_migration')
        self.start_compute('src')
        server = self.create_vtpm_server()
        self.start_compute('dest')
        self.src, self.dest = self.computes['src'], self.computes['dest']
        self.server = server
        secret = self.libvirt_secret('src', server)
        self.assertIsNotNone(secret)

        self._live_migrate(server, api=self.admin_api, host='dest')

        self.assertEqual(secret, self.libvirt_secret('dest', server))
        self.assertIsNone(self.libvirt_secret('src', server))
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('dest'))
        self.assert_no_leak(secret)


