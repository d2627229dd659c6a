"""Client.connect(address), as SPEC 6 writes it: no config, no cluster name."""

from __future__ import annotations

import pytest
from cluster import Cluster

import sandzmq

pytestmark = pytest.mark.integration


def test_connect_by_address_alone_writes_on_the_leader_and_refuses_on_a_follower(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start_all()
        leader = cluster.wait_for_leader(timeout=15)
        follower = next(n for n in cluster.node_ids if n != leader)
        with sandzmq.Client.connect(cluster.client_addresses[leader]) as client:
            assert client.replicate(b"through-connect", timeout=10) is not None
        with sandzmq.Client.connect(cluster.client_addresses[follower]) as client:
            with pytest.raises(sandzmq.NotLeaderError) as refused:
                client.replicate(b"refused", timeout=10)
        assert refused.value.leader_id == leader
        assert refused.value.leader_address == cluster.client_addresses[leader]
    finally:
        cluster.close()


def test_connect_to_an_address_where_nothing_listens_is_cluster_unavailable(tmp_path):
    from cluster import free_ports

    (port,) = free_ports(1)
    with pytest.raises(sandzmq.ClusterUnavailable):
        sandzmq.Client.connect(f"tcp://127.0.0.1:{port}")
