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

"""``nova-vtpm-migration``: the operator command line.

Every command takes ``--format table|json``. Exit codes:

* 0: success (a positive verdict);
* 1: a negative verdict (a policy, receipt or peer that does not verify);
* 2: bad command-line arguments;
* 3: a bad input file or configuration;
* 4: the TPM, a peer or the journal is unavailable.

Errors are printed as one line on standard error, never as a traceback
(``--debug`` shows the traceback too).
"""

import argparse
import os
import sys
import traceback
import typing as ty

from oslo_config import cfg

from nova_vtpm_migration import conf as conf_mod
from nova_vtpm_migration import exception
from nova_vtpm_migration.cmd import host_commands
from nova_vtpm_migration.cmd import protocol_commands
from nova_vtpm_migration.cmd import vault_commands
from nova_vtpm_migration.tpm import errors as tpm_errors

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_UNAVAILABLE = 4

DEFAULT_CONFIG_FILES = ('/etc/nova/nova.conf', '/etc/nova/nova-cpu.conf')

#: [vtpm_migration] options that have a command-line override.
OVERRIDABLE = ('tcti', 'state_path', 'policy_file')

Handler = ty.Callable[[cfg.ConfigOpts, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> ty.NoReturn:
        self.exit(EXIT_USAGE, f'{self.prog}: error: {message}\n')


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(
        prog='nova-vtpm-migration',
        description='Operate attested vTPM live migration for Nova.')
    parser.add_argument('--config-file', action='append', default=None,
                        help='nova configuration file (repeatable; default: '
                             'the ones of /etc/nova that exist)')
    parser.add_argument('--format', choices=('table', 'json'),
                        default='table', help='output format')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks of errors')
    for opt, dest in (('--tcti', 'tcti'), ('--state-path', 'state_path'),
                      ('--policy-file', 'policy_file')):
        parser.add_argument(opt, dest=dest, default=None,
                            help=f'override [vtpm_migration] {dest}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                parser_class=_Parser)
    sub.required = True
    host_commands.add_parsers(sub)
    protocol_commands.add_parsers(sub)
    vault_commands.add_parsers(sub)
    return parser


def load_config(args: argparse.Namespace) -> cfg.ConfigOpts:
    """Load nova's configuration plus the command-line overrides."""
    files = args.config_file
    if files is None:
        files = [f for f in DEFAULT_CONFIG_FILES if os.path.exists(f)]
    conf = conf_mod.CONF
    conf(['--config-file=' + f for f in files], project='nova',
         default_config_files=[])
    for name in OVERRIDABLE:
        value = getattr(args, name)
        if value is not None:
            conf.set_override(name, value, group='vtpm_migration')
    return conf


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, (tpm_errors.TpmUnavailable, tpm_errors.TpmBusy,
                        tpm_errors.TpmFailureMode, tpm_errors.TpmLockout)):
        return EXIT_UNAVAILABLE
    if isinstance(exc, (tpm_errors.VerificationError,)):
        return EXIT_NEGATIVE
    if isinstance(exc, (exception.ConfigurationError, cfg.Error, OSError,
                        ValueError)):
        return EXIT_BAD_INPUT
    if isinstance(exc, exception.VtpmMigrationException):
        return EXIT_UNAVAILABLE
    return EXIT_UNAVAILABLE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nova-vtpm-migration`` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    conf = conf_mod.CONF
    try:
        load_config(args)
        return handler(conf, args)
    except (exception.VtpmMigrationException, cfg.Error, OSError,
            ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        action = ' '.join(filter(None, (args.command, *(
            getattr(args, f'{c}_command', None)
            for c in ('policy', 'journal', 'receipts', 'vault')))))
        sys.stderr.write(f'nova-vtpm-migration {action}: error: {exc}\n')
        return _exit_code(exc)
    finally:
        for name in OVERRIDABLE:
            conf.clear_override(name, group='vtpm_migration')


if __name__ == '__main__':
    sys.exit(main())
