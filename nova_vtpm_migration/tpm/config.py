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

"""Build the TPM layer's objects from the ``[vtpm_migration]`` options."""

import collections.abc
import os

from oslo_config import cfg

from nova_vtpm_migration.tpm import auth
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import policy as policy_mod


def trust_policy(conf: cfg.ConfigOpts) -> policy_mod.TrustPolicy:
    """Load ``[vtpm_migration] policy_file``.

    ``evidence_max_age`` is used when the file sets no maximum.

    :raises exception.PolicyFileError: unreadable or invalid.
    """
    group = conf.vtpm_migration
    return policy_mod.TrustPolicy.load(
        group.policy_file, default_max_age=group.evidence_max_age)


def host_tpm(conf: cfg.ConfigOpts,
             policy: policy_mod.TrustPolicy | None = None, *,
             pcr_selection: collections.abc.Sequence[int] | None = None
             ) -> host_mod.HostTpm:
    """This host's :class:`~host.HostTpm`.

    It quotes ``policy``'s PCRs, or ``pcr_selection`` (for enrollment and
    policy generation, before a policy exists). Key blobs are kept in
    ``<state_path>/tpm``.

    :raises auth.AuthFileError: ``owner_auth_file`` or
        ``endorsement_auth_file`` is unusable (missing, readable by others).
    """
    if pcr_selection is None:
        if policy is None:
            raise ValueError('a policy or a PCR selection is required')
        pcr_selection = policy.pcr_selection
    group = conf.vtpm_migration
    ctx = context.TpmContext(group.tcti, lock_timeout=group.tpm_lock_timeout)
    return host_mod.HostTpm(
        ctx, os.path.join(group.state_path, 'tpm'),
        srk_handle=group.srk_handle, ak_handle=group.ak_handle,
        signing_key_handle=group.signing_key_handle,
        pcr_selection=pcr_selection,
        binding_key_lifetime=group.binding_key_rotation_interval,
        ek_types=group.ek_types,
        owner_auth=auth.HierarchyAuth('owner', group.owner_auth_file,
                                      'owner_auth_file'),
        endorsement_auth=auth.HierarchyAuth(
            'endorsement', group.endorsement_auth_file,
            'endorsement_auth_file'))
