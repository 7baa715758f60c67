"""The Ray tier: a real 2-node Ray cluster on this machine (every node on 127.0.0.1, 1 CPU each, a
custom resource naming each node). Without Ray these tests skip, except under CI where that is a failure."""

from __future__ import annotations

import os

import pytest

# Nodes bound to 127.0.0.1: without this, a driver rewrites the 127.0.0.1 address it is given into
# the machine's outward IP (Ray's multi-host default), where nothing listens. Set before Ray is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

NODE_RESOURCES = ({"node_head": 1}, {"node_worker": 1})


@pytest.fixture(scope="session")
def ray_cluster():
    try:
        from ray.cluster_utils import Cluster
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Ray tier under CI without Ray: {exc} (install the [ray] extra)")
        pytest.skip(f"Ray is not installed: {exc}")
    common = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**common, "resources": NODE_RESOURCES[0],
                                                            "include_dashboard": False})
    cluster.add_node(**common, resources=NODE_RESOURCES[1])
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def node_names(ray_cluster):
    """Ray node id -> the custom resource that names it (so placement can be asserted)."""
    import ray

    ray.init(address=ray_cluster.address, log_to_driver=False, logging_level="warning")
    try:
        names = {}
        for n in ray.nodes():
            label = [r for r in n["Resources"] if r.startswith("node_")]
            names[n["NodeID"]] = label[0]
        return names
    finally:
        ray.shutdown()
