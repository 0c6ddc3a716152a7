"""`hobench run --executor ray`: the same records as a local run, on a real local Ray cluster."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from hobench.harness.ray_executor import LOST, RayUnavailable
from hobench.harness.runner import run_suite
from hobench.harness.store import ResultsStore
from hobench.harness.suite import load_suite
from tests import harness_toys
from tests.conftest import hobench
from tests.test_runner import (
    SAFETY_S,
    by_cell,
    group_gone,
    hobench_process,
    line_count,
    strategy,
    strict_lines,
    wait_for,
    write_suite,
)

pytest.importorskip("ray", reason="make install installs the ray extra")  # a plain pip user


@pytest.fixture(autouse=True)
def toy_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in harness_toys.plugin_env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="class")
def local_ray() -> str:
    """One local Ray instance shared by a class's tests (starting one costs seconds, more under
    load): this process's runs find it initialised and use it, a CLI run joins it by address.
    Its workers get the toys' settings, as a run that starts Ray passes its own."""
    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith("HOBENCH_")}
    env.update(harness_toys.plugin_env())
    ray.init(
        address="local",  # a new instance, never a cluster another process started here
        num_cpus=2,
        runtime_env={"env_vars": env},
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class TestOnOneLocalRay:
    def test_a_ray_run_records_what_a_local_run_records(
        self, tmp_path: Path, local_ray: str
    ) -> None:
        # Two cells, one wave on CI's two cores: each Ray worker is a fresh process that imports
        # torch, so every extra wave costs seconds. toy-nice fails unless the cell runs at this
        # process's niceness (Ray's default for workers is 15: starved on a loaded machine).
        nice = strategy("toy-nice", niceness=os.nice(0))
        suite = load_suite(write_suite(tmp_path, nice + strategy("toy-kill")))
        local = run_suite(suite, tmp_path / "local", jobs=2, quiet=True)
        on_ray = run_suite(suite, tmp_path / "ray", jobs=2, quiet=True, executor="ray")
        records = {r["cell"]: r for r in ResultsStore(tmp_path / "ray").load()}
        assert on_ray.ok == local.ok == ["q/toy-nice/0"], records["q/toy-nice/0"]["error"]
        assert len(records) == 2  # written by the driver through the same store
        assert records["q/toy-kill/0"]["error"].startswith("WorkerCrash: Ray worker died")
        local_records = {r["cell"]: r for r in ResultsStore(tmp_path / "local").load()}
        assert by_cell([records["q/toy-nice/0"]]) == by_cell([local_records["q/toy-nice/0"]])
        again = run_suite(suite, tmp_path / "ray", jobs=2, quiet=True, executor="ray")
        assert again.ran == 0 and again.skipped == 2  # resume: a crash is a result, kept

    def test_smoke_cells_on_ray_give_the_local_runs_results(
        self, smoke_results: Path, tmp_path: Path, local_ray: str
    ) -> None:
        """The smoke suite through `hobench run --executor ray --address`, as a user runs it on
        a cluster, equals the local run's records to the last bit. Two of its cells (Reverse-HG
        on ridge, both seeds): every Ray worker is a fresh process importing torch, and 8 cells
        took 7 minutes on 2 cores at load 15."""
        out = tmp_path / "ray"
        only = ("--only", "ridge/reverse-hg")
        args = ("suites/smoke.toml", "--executor", "ray", "--address", local_ray, "--jobs", "2")
        done = hobench("run", *args, *only, "--quiet", "--results-dir", str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        on_ray = {r["cell"]: r for r in ResultsStore(out).load()}
        local = {r["cell"]: r for r in ResultsStore(smoke_results).load() if r["cell"] in on_ray}
        assert sorted(on_ray) == sorted(local) and len(on_ray) == 2
        assert all(r["status"] == "ok" for r in on_ray.values())
        assert by_cell(list(on_ray.values())) == by_cell(list(local.values()))


def test_a_node_lost_mid_run_fails_its_cell_and_a_resume_reruns_it(tmp_path: Path) -> None:
    """A real two-node cluster on loopback (Ray's own test cluster: a head with no CPU, so the
    cell runs on the second node). The node dies mid-cell: the cell is recorded as lost, the
    cell beside it that had finished is kept, and a plain rerun on a new node runs only the lost
    one."""
    from ray.cluster_utils import Cluster

    (tmp_path / "hold").touch()
    held = strategy("toy-hold", folder=f'"{tmp_path}"')
    suite = load_suite(write_suite(tmp_path, strategy("toy-random") + held))
    results = tmp_path / "results"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        node = cluster.add_node(num_cpus=1)

        def lose_the_node():
            wait_for(lambda: (tmp_path / "started").exists())
            cluster.remove_node(node, allow_graceful=False)

        killer = threading.Thread(target=lose_the_node)
        killer.start()
        first = run_suite(suite, results, quiet=True, executor="ray", address=cluster.address)
        killer.join()
        records = {r["cell"]: r for r in ResultsStore(results).load()}
        assert first.ok == ["q/toy-random/0"]
        assert records["q/toy-hold/0"]["error"].startswith(f"{LOST}: "), records["q/toy-hold/0"]
        (tmp_path / "hold").unlink()
        cluster.add_node(num_cpus=1)
        again = run_suite(suite, results, quiet=True, executor="ray", address=cluster.address)
        assert again.ran == 1 and again.ok == ["q/toy-hold/0"]
    finally:
        cluster.shutdown()


def test_ctrl_c_under_ray_stops_the_run_and_keeps_finished_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hobench_process sets TMPDIR to the test's folder, where Ray would put its sockets too:
    # a path too long for a Unix socket. Ray's own variable keeps them in /tmp.
    monkeypatch.setenv("RAY_TMPDIR", "/tmp")
    (tmp_path / "hold").touch()
    held = strategy("toy-hold", folder=f'"{tmp_path}"')
    path = write_suite(tmp_path, strategy("toy-random") + held)
    runs = tmp_path / "results" / "runs.jsonl"
    process = hobench_process(path, runs.parent, "--executor", "ray", "--jobs", "2")
    wait_for(lambda: (tmp_path / "started").exists() and line_count(runs) >= 1)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
    _, stderr = process.communicate(timeout=SAFETY_S)
    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert [r["cell"] for r in strict_lines(runs)] == ["q/toy-random/0"]  # the held one: not run
    wait_for(lambda: group_gone(process.pid))


def test_a_cell_whose_worker_was_lost_is_rerun_by_a_plain_resume(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, strategy("toy-random"), seeds="[0, 1]"))
    first = run_suite(suite, tmp_path / "results", quiet=True)
    store = ResultsStore(tmp_path / "results")
    lost = {**first.records[0], "status": "failed", "error": f"{LOST}: NodeDiedError: gone"}
    store.remove({lost["cell"]})
    store.append(lost)
    resumed = run_suite(suite, tmp_path / "results", quiet=True)
    assert resumed.ran == 1 and resumed.ok == [lost["cell"]]


def test_without_ray_the_executor_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    suite = load_suite(write_suite(tmp_path, strategy("toy-random")))
    with pytest.raises(RayUnavailable, match=r"pip install 'hobench\[ray\]'"):
        run_suite(suite, tmp_path / "results", quiet=True, executor="ray")
