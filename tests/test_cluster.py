"""generate --scheduler: the same maps and manifest on a (loopback) Dask cluster."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from click.testing import CliRunner  # noqa: E402
from weightmaps.cli.main import main  # noqa: E402

from weightmaps.pipeline import generate  # noqa: E402
from weightmaps.pipeline.cluster import check_scheduler  # noqa: E402
from weightmaps.pipeline.manifest import MANIFEST_NAME  # noqa: E402

# The worker plugin below is defined here, in a module the workers cannot
# import: send it by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class KillFirstTask(distributed.WorkerPlugin):
    """Ends its worker process when the first task of the run starts (once)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and not os.path.exists(self.flag):
            Path(self.flag).touch()
            os._exit(1)


def _maps(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): tifffile.imread(p) for p in sorted(out.rglob("*.tif"))}


def _records(out: Path) -> dict:
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    return {
        rel: {k: v for k, v in record.items() if k != "outputs"}
        | {"outputs": {kind: o["params"] for kind, o in record["outputs"].items()}}
        for rel, record in manifest["masks"].items()
    }


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_cluster_gives_the_maps_and_manifest_of_the_local_path(masks, tmp_path, client):
    options = {"separate_touching": True, "balance_scope": "dataset", "mask_type": "instance"}
    local = generate(masks / "nuclei", tmp_path / "local", workers=1, **options)
    remote = generate(masks / "nuclei", tmp_path / "remote", scheduler=client, **options)
    assert local.exit_code == remote.exit_code == 0
    assert sorted(remote.done) == sorted(local.done)
    expected, got = _maps(tmp_path / "local"), _maps(tmp_path / "remote")
    assert got.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    assert _records(tmp_path / "remote") == _records(tmp_path / "local")
    again = generate(masks / "nuclei", tmp_path / "remote", scheduler=client, **options)
    assert again.done == [] and len(again.skipped) == 4


def test_a_worker_dying_mid_run_loses_nothing(masks, tmp_path, client):
    flag = tmp_path / "killed"
    client.register_plugin(KillFirstTask(str(flag)), name="kill-first-task")
    try:
        report = generate(masks / "nuclei", tmp_path / "out", scheduler=client)
    finally:
        client.unregister_worker_plugin("kill-first-task")
    assert flag.exists(), "the plugin never ended a worker"
    assert report.exit_code == 0 and len(report.done) == 4
    assert len(_maps(tmp_path / "out")) == 12
    json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    again = generate(masks / "nuclei", tmp_path / "out", scheduler=client)
    assert again.done == [] and len(again.skipped) == 4


def test_bad_mask_is_reported_once_on_the_cluster(masks, tmp_path, client):
    (masks / "nuclei" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    report = generate(masks / "nuclei", tmp_path / "out", scheduler=client)
    assert report.exit_code == 1
    assert list(report.failed) == ["broken.png"]
    assert len(report.done) == 4


def test_local_scheduler_from_the_command_line(masks, tmp_path):
    result = CliRunner().invoke(
        main, ["generate", str(masks / "binary"), str(tmp_path / "o"), "--scheduler", "local:1"]
    )
    assert result.exit_code == 0, result.output
    assert len(_maps(tmp_path / "o")) == 6


@pytest.mark.parametrize("bad", ["local:0", "local:x", "somehost:8786", 42])
def test_bad_scheduler_is_a_usage_error(bad):
    with pytest.raises(ValueError, match="scheduler"):
        check_scheduler(bad)


def test_scheduler_with_a_gpu_device_is_refused(masks, tmp_path):
    with pytest.raises(ValueError, match="scheduler"):
        generate(masks / "nuclei", tmp_path / "o", scheduler="local:1", device="torch:cpu")


def test_batched_jobs_survive_a_dying_worker_and_a_bad_mask(tmp_path, client):
    """Enough masks that a task carries several: one broken, one worker lost."""
    from weightmaps.pipeline.cluster import batches

    rng = np.random.default_rng(3)
    masks = tmp_path / "many"
    masks.mkdir()
    for i in range(40):
        label = np.zeros((48, 48), np.uint16)
        for k in range(1, 5):
            y, x = rng.integers(4, 40, 2)
            label[y : y + 6, x : x + 6] = k
        tifffile.imwrite(masks / f"m{i:02d}.tif", label)
    (masks / "m17.tif").write_bytes(b"II*\x00truncated")
    assert max(len(b) for b in batches(list(range(40)), workers=2)) > 1
    flag = tmp_path / "killed"
    client.register_plugin(KillFirstTask(str(flag)), name="kill-first-task")
    try:
        report = generate(masks, tmp_path / "out", scheduler=client, kinds=("edge",))
    finally:
        client.unregister_worker_plugin("kill-first-task")
    assert flag.exists(), "the plugin never ended a worker"
    assert report.exit_code == 1 and list(report.failed) == ["m17.tif"]
    assert len(report.done) == 39 and len(_maps(tmp_path / "out")) == 39
    generate(masks, tmp_path / "local", kinds=("edge",))
    assert _records(tmp_path / "out") == _records(tmp_path / "local")
    again = generate(masks, tmp_path / "out", scheduler=client, kinds=("edge",))
    assert again.done == [] and len(again.skipped) == 39 and list(again.failed) == ["m17.tif"]


def _fails_on_poison(job: str) -> dict:
    if job == "poison":
        raise RuntimeError("poisoned")  # as a job that keeps killing its workers
    return {"job": job}


def test_a_failing_job_fails_alone_not_its_batch_mates(client):
    from weightmaps.pipeline.cluster import DaskWorkers, batches

    jobs = [f"ok{i}" for i in range(20)] + ["poison"] + [f"ok{i}" for i in range(20, 40)]
    assert max(len(b) for b in batches(jobs, workers=2)) > 1
    with DaskWorkers(client) as engine:
        results = dict(engine.run(_fails_on_poison, jobs))
    assert sorted(results) == sorted(jobs)
    assert "failed on the cluster: RuntimeError: poisoned" in results.pop("poison").reason
    assert {job: r for job, r in results.items() if r != {"job": job}} == {}


def test_local_workers_drop_only_the_heartbeat_error_of_a_closed_scheduler():
    """A local worker whose heartbeat finds the client's scheduler closed says
    nothing (a Ctrl-C test saw its traceback); its other errors still show."""
    import logging
    import threading

    from weightmaps.pipeline.cluster import dask_setup

    logger = logging.getLogger("distributed.worker")
    before = list(logger.filters)
    # Not the main thread: dask_setup leaves this process's SIGINT alone.
    setup = threading.Thread(target=dask_setup, args=(None,))
    setup.start()
    setup.join()
    try:
        (added,) = [f for f in logger.filters if f not in before]

        def record(message: str) -> logging.LogRecord:
            return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, (), None)

        gone = record("Failed to communicate with scheduler during heartbeat.")
        assert not logger.filter(gone)
        assert logger.filter(record("Unexpected exception during heartbeat. Closing worker."))
        assert logger.filter(record("Compute Failed"))
    finally:
        logger.removeFilter(added)
