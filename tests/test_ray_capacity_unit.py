"""The Ray backend's capacity rule and waiting line (issue 19, item 11), without a cluster."""

from __future__ import annotations

from harness.sweep.ray_backend import capacity_problem, describe_request, waiting_line


def node(cpu: float, gpu: float = 0, alive: bool = True, addr: str = "10.0.0.1") -> dict:
    resources = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    return {"Alive": alive, "Resources": resources, "NodeManagerAddress": addr, "NodeID": "n" * 56}


def test_a_request_some_alive_node_can_hold_is_accepted():
    assert capacity_problem({"num_cpus": 2}, [node(1), node(2)]) is None
    assert capacity_problem({"num_cpus": 1, "num_gpus": 0.5}, [node(8), node(1, gpu=1)]) is None


def test_a_request_no_node_can_hold_names_the_request_and_the_largest_node():
    problem = capacity_problem({"num_cpus": 2}, [node(1, addr="127.0.0.1"), node(1), node(64, alive=False)])
    assert problem == ("each job asks for 2 CPUs, but no alive Ray node has that much: the largest "
                       "(127.0.0.1, of 2 alive) has 1 CPU")
    gpu = capacity_problem({"num_cpus": 1, "num_gpus": 1.0}, [node(32, addr="a"), node(4, gpu=0.5, addr="b")])
    assert gpu is not None and "1 CPU and 1 GPU" in gpu and "(b, of 2 alive) has 4 CPUs and 0.5 GPU" in gpu
    assert capacity_problem({"num_cpus": 1}, [node(4, alive=False)]) == "the Ray cluster has no alive node"


def test_the_waiting_line_says_how_many_how_long_what_they_ask_and_what_is_free():
    line = waiting_line({"exp_b/seed 5": 100.0, "exp_a/seed 4": 70.0}, {"num_cpus": 1.0}, 131.0,
                        {"CPU": 0.0}, {"CPU": 2.0})
    assert line == ("sweep: 2 Ray jobs waiting for resources (up to 61 s; each asks for 1 CPU; free now: 0 of 2 "
                    "CPUs): exp_a/seed 4, exp_b/seed 5")
    assert describe_request({"num_cpus": 1.0, "num_gpus": 0.25}) == "1 CPU and 0.25 GPU"
