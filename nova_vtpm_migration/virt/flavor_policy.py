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

"""Which instances the plugin protects, and their flavor policy.

Shared by the driver mixin, the scheduler filter and the extra spec
validators so that all three read the flavor the same way.

Flavor extra specs (namespace ``vtpm_migration``):

``vtpm_migration:attested`` = ``required`` | ``optional``
    ``required``: the instance is placed only on hosts that currently
    report :data:`ATTESTED_TRAIT` (scheduler filter), even without a vTPM,
    and a vTPM instance live-migrates only through the attested protocol
    whatever ``[vtpm_migration] enforcement`` says. ``optional``: placement
    ignores the trait. Unset: protected instances (see
    :func:`is_protected`) need the trait. Unless ``required``, a peer
    without the plugin is handled as ``[vtpm_migration] enforcement`` says.
    Attestation failures are always refused.
``vtpm_migration:policy`` = ``<name>``
    Attest the peer against the named trust policy of
    ``[vtpm_migration] named_policies`` instead of ``policy_file``.
"""

import typing as ty

from nova.virt import hardware

#: Placement trait a compute node reports while its own attestation
#: evidence is fresh and valid against its trust policy.
ATTESTED_TRAIT = 'CUSTOM_VTPM_MIGRATION_ATTESTED'

NAMESPACE = 'vtpm_migration'
ATTESTED_SPEC = NAMESPACE + ':attested'
POLICY_SPEC = NAMESPACE + ':policy'

REQUIRED = 'required'
OPTIONAL = 'optional'
ATTESTED_VALUES = (REQUIRED, OPTIONAL)

#: Pattern of a policy name (also used by the extra spec validator).
POLICY_NAME_PATTERN = r'[A-Za-z0-9_.-]{1,64}'


def has_vtpm(flavor: ty.Any, image_meta: ty.Any) -> bool:
    """Return whether the flavor or image requests a vTPM.

    :param flavor: a ``nova.objects.Flavor``.
    :param image_meta: a ``nova.objects.ImageMeta``.
    """
    return hardware.get_vtpm_constraint(flavor, image_meta) is not None


def is_protected(flavor: ty.Any, image_meta: ty.Any) -> bool:
    """Return whether live migration of such an instance is the plugin's.

    Nova live-migrates vTPM instances only with
    ``hw:tpm_secret_security=host`` (the API refuses the other modes), so
    these are exactly the instances whose vTPM secret upstream Nova would
    put in plaintext on the message bus.

    :param flavor: a ``nova.objects.Flavor``.
    :param image_meta: a ``nova.objects.ImageMeta``.
    """
    if not has_vtpm(flavor, image_meta):
        return False
    security = hardware.get_tpm_secret_security_constraint(flavor)
    return bool(security == 'host')


def _extra_specs(flavor: ty.Any) -> ty.Mapping[str, str]:
    specs = getattr(flavor, 'extra_specs', None) or {}
    return ty.cast(ty.Mapping[str, str], specs)


def attestation(flavor: ty.Any) -> str | None:
    """Return the flavor's ``vtpm_migration:attested`` value.

    :param flavor: a ``nova.objects.Flavor``.
    :returns: ``required``, ``optional`` or ``None`` when unset.
    """
    value = _extra_specs(flavor).get(ATTESTED_SPEC)
    return value if value in ATTESTED_VALUES else None


def may_fall_back(flavor: ty.Any, enforcement: str) -> bool:
    """Return whether a peer without the plugin may get upstream behaviour.

    :param flavor: a ``nova.objects.Flavor``.
    :param enforcement: ``[vtpm_migration] enforcement``.
    """
    return enforcement == 'warn' and attestation(flavor) != REQUIRED


def policy_name(flavor: ty.Any) -> str | None:
    """Return the flavor's ``vtpm_migration:policy`` value, if any.

    :param flavor: a ``nova.objects.Flavor``.
    """
    return _extra_specs(flavor).get(POLICY_SPEC) or None


def needs_attested_host(flavor: ty.Any, image_meta: ty.Any) -> bool:
    """Return whether placement must pick a host reporting the trait.

    :param flavor: a ``nova.objects.Flavor``.
    :param image_meta: a ``nova.objects.ImageMeta``.
    """
    spec = attestation(flavor)
    if spec == REQUIRED:
        return True
    return spec != OPTIONAL and is_protected(flavor, image_meta)
