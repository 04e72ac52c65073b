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


"""The ready-made testbed the demo and the benchmark use."""

import os

from tests.integration.dataplane import conftest
from tests.support.dataplane import provision
from tests.support.dataplane import testbed


def test_testbed_migrates_both_ways_and_cleans_up(base_dir):
    with testbed.Testbed(distinct_eks=False) as tb:
        inst, contents = tb.new_instance('src')
        secured = tb.migrate(inst, 'src', 'dst')
        plain = tb.migrate(inst, 'dst', 'src', secured_mode=False)
        assert secured.committed and plain.committed, (secured.error,
                                                       plain.error)
        assert secured.mode == 'secured' and plain.mode == 'plain'
        assert provision.compare(contents,
                                 tb.hosts['src'].read_back(inst)) == []
        tb_dir = tb.dir
    assert not os.path.exists(tb_dir)
    assert conftest.processes_mentioning(tb_dir) == []
