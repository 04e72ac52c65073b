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

"""Authorisation values of the owner and endorsement hierarchies.

A provisioned host TPM usually has an owner (storage) and an endorsement
hierarchy authorisation value. The plugin needs them to create and persist
its SRK and AK (owner: ``CreatePrimary``, ``EvictControl``) and to create
and use the EK (endorsement: ``CreatePrimary``, ``PolicySecret``). Each
value comes from a file named by ``[vtpm_migration] owner_auth_file`` /
``endorsement_auth_file`` -- never from a command line or the
configuration itself -- and is read only when a command needs it. It is
never logged and never part of an exception message.

File format: the value's bytes as they are, without one trailing newline
(``\\n`` or ``\\r\\n``), so that ``printf`` and ``echo`` both work; a file
starting with ``hex:`` holds the value hex-encoded (binary values). The same
value ``tpm2_changeauth -c owner`` was given as ``str:`` or ``hex:``. A
file that others may read or write is refused.
"""

import collections.abc
import contextlib
import os
import stat
import typing as ty

from tpm2_pytss import constants

from nova_vtpm_migration import exception
from nova_vtpm_migration.i18n import _
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import errors

#: The largest authValue a TPM accepts (a SHA-512 digest).
MAX_AUTH = 64
_MAX_FILE = 4 * MAX_AUTH + 16
_HEX = b'hex:'
#: TPM_RC_AUTH_FAIL and TPM_RC_BAD_AUTH (session-relative forms).
_AUTH_CODES = frozenset((0x08E, 0x0A2))
_HANDLES = {'owner': constants.ESYS_TR.OWNER,
            'endorsement': constants.ESYS_TR.ENDORSEMENT}


class AuthFileError(exception.ConfigurationError):
    """A hierarchy authorisation file is unusable (never shows its
    content)."""

    msg_fmt = _('TPM %(hierarchy)s authorisation file %(path)s '
                '([vtpm_migration] %(option)s) is unusable: %(reason)s')


class HierarchyAuthFailed(errors.TpmError):
    """The TPM refused a hierarchy authorisation."""

    msg_fmt = _('The TPM refused the %(hierarchy)s hierarchy authorisation '
                'for %(command)s (rc=%(rc)#x): %(hint)s')


class HierarchyAuth:
    """Where one hierarchy's authorisation value comes from.

    :param hierarchy: ``owner`` or ``endorsement``.
    :param path: the file holding the value; ``None``: the empty value
        (a TPM whose hierarchy has no authorisation value).
    :param option: the configuration option naming the file (messages).
    """

    def __init__(self, hierarchy: str, path: str | None = None,
                 option: str | None = None) -> None:
        if hierarchy not in _HANDLES:
            raise ValueError(f'unknown hierarchy {hierarchy!r}')
        self.hierarchy = hierarchy
        self.path = path
        self.option = option or f'{hierarchy}_auth_file'

    @property
    def handle(self) -> ty.Any:
        """The ESYS_TR of the hierarchy."""
        return _HANDLES[self.hierarchy]

    def __repr__(self) -> str:
        return f'<HierarchyAuth {self.hierarchy} from {self.path}>'

    def _error(self, reason: str) -> AuthFileError:
        return AuthFileError(hierarchy=self.hierarchy, path=self.path,
                             option=self.option, reason=reason)

    def check(self) -> None:
        """Check that the file exists, is a regular file, is not
        accessible to others and holds a usable value.

        :raises AuthFileError: it does not.
        """
        self.value()

    def value(self) -> bytes:
        """Read the authorisation value (``b''`` without a file).

        :raises AuthFileError: missing, not a regular file, readable or
            writable by others, too long or malformed.
        """
        if self.path is None:
            return b''
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise self._error(exc.strerror or type(exc).__name__) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._error('not a regular file')
            if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
                raise self._error(
                    f'mode {stat.S_IMODE(st.st_mode):04o} lets other users '
                    'read or write it; allow only its owner and group '
                    '(e.g. chmod 0640)')
            raw = os.read(fd, _MAX_FILE + 1)
        finally:
            os.close(fd)
        return self._parse(raw)

    def _parse(self, raw: bytes) -> bytes:
        if len(raw) > _MAX_FILE:
            raise self._error('too large for an authorisation value')
        for end in (b'\r\n', b'\n'):
            if raw.endswith(end):
                raw = raw[:-len(end)]
                break
        if raw.startswith(_HEX):
            try:
                raw = bytes.fromhex(raw[len(_HEX):].decode('ascii'))
            except (UnicodeDecodeError, ValueError):
                raise self._error("'hex:' is not followed by an even "
                                  'number of hex digits') from None
        if len(raw) > MAX_AUTH:
            raise self._error(f'the value is longer than {MAX_AUTH} '
                              'bytes')
        return raw

    @contextlib.contextmanager
    def authorize(self, e: context.Esys, command: str
                  ) -> collections.abc.Iterator[ty.Any]:
        """Yield the hierarchy's ESYS_TR with its authorisation value set
        for the commands of the block; the value is cleared afterwards.

        A TPM refusal of the authorisation (``TPM_RC_AUTH_FAIL``,
        ``TPM_RC_BAD_AUTH``) inside the block becomes
        :class:`HierarchyAuthFailed` naming the option to set.

        :param e: the ESAPI proxy of the current block.
        :param command: the TPM command authorised (messages).
        :raises AuthFileError: the file is unusable.
        :raises HierarchyAuthFailed: the TPM refused the value.
        """
        handle = self.handle
        e.tr_set_auth(handle, self.value())
        try:
            yield handle
        except errors.TpmCommandError as exc:
            rc = int(exc.kwargs.get('rc', 0))
            if context.tpm_rc_code(rc) not in _AUTH_CODES:
                raise
            if self.path is None:
                hint = (f'the {self.hierarchy} hierarchy has an '
                        'authorisation value; put it in a file named by '
                        f'[vtpm_migration] {self.option}')
            else:
                hint = (f'the value in {self.path} ([vtpm_migration] '
                        f'{self.option}) is not the {self.hierarchy} '
                        'hierarchy authorisation value')
            raise HierarchyAuthFailed(hierarchy=self.hierarchy,
                                      command=command, rc=rc,
                                      hint=hint) from exc
        finally:
            with contextlib.suppress(errors.TpmError):
                e.tr_set_auth(handle, b'')
