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


"""The VM-vTPM migration protocol (transport-agnostic).

Phase 1 (:mod:`.handshake`) attests both hosts with their TPMs and derives
a host-pair session; phase 2 (:mod:`.transfer`) moves one instance's vTPM
secret wrapped to the destination's PCR-bound binding key; the commit
protocol (:mod:`.states`, :mod:`.engine`) makes the hand-over atomic and
recoverable from the per-host :mod:`.journal`.
"""
