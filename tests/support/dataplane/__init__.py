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


"""Data plane: real swtpm vTPMs and QEMU guests that live-migrate.

This package drives the processes that hold a guest's vTPM on a host:

- :mod:`.qmp` - a small QMP client;
- :mod:`.swtpm_ctrl` - the swtpm control-channel commands used here;
- :mod:`.vtpm` - one ``swtpm socket --tpm2`` process per instance, its
  state keys passed by pipe file descriptor, never by file or argv;
- :mod:`.guest` - one ``qemu-system-x86_64`` (TCG) guest per instance;
- :mod:`.provision` - recognisable vTPM content written and read back
  through tpm2-pytss;
- :mod:`.host` - a simulated host owning those processes;
- :mod:`.migration` - live migration with per-phase timings, and the
  plain (upstream-equivalent) key hand-over;
- :mod:`.secured` - the key delivered only by the protocol engines.

It is used by the tests, the demo and the benchmark; product code (the
Nova driver, the protocol and the TPM layer) never imports it.
"""
