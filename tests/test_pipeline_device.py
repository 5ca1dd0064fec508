"""The device path of generate (torch kernels in batches) against the CPU path.

Runs on the CPU through torch ("torch:cpu") in CI; the same comparisons run
on CUDA under the ``gpu`` marker where a GPU exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import weightmaps
from weightmaps.pipeline import device as device_module
from weightmaps.pipeline import generate, resolve_device

W0 = 10.0
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CASES = {
    "nuclei": {"separate_touching": True, "class_weights": "balanced"},
    "binary": {"edge_size": (64, 80)},
    "semantic": {"mask_type": "semantic", "ignore_value": 255, "balance_mode": "median"},
    "volume": {"spacing": "auto", "sigma": 2.0, "balance_scope": "dataset"},
}


def _maps(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): tifffile.imread(p) for p in sorted(out.rglob("*.tif"))}


def _compare_with_cpu(masks: Path, tmp_path: Path, device: str, workers: int, **options) -> None:
    cpu = generate(masks, tmp_path / "cpu", workers=1, progress=False, device="cpu", **options)
    dev = generate(
        masks,
        tmp_path / "dev",
        workers=workers,
        progress=False,
        device=device,
        batch_size=3,
        **options,
    )
    assert cpu.exit_code == dev.exit_code == 0
    assert sorted(dev.done) == sorted(cpu.done)
    expected, got = _maps(tmp_path / "cpu"), _maps(tmp_path / "dev")
    assert got.keys() == expected.keys()
    for name, array in expected.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].shape == array.shape, name
        tolerance = 1e-5 * W0 if name.endswith(".unet.tif") else 1e-5
        np.testing.assert_allclose(got[name], array, rtol=0, atol=tolerance, err_msg=name)
    assert dev.device_seconds > 0


@pytest.mark.parametrize("folder", sorted(CASES))
def test_torch_cpu_path_equals_cpu_kernels(masks, tmp_path, folder):
    _compare_with_cpu(masks / folder, tmp_path, "torch:cpu", workers=1, **CASES[folder])


def test_torch_cpu_path_with_worker_processes(masks, tmp_path):
    _compare_with_cpu(masks / "nuclei", tmp_path, "torch:cpu", workers=2)


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("folder", sorted(CASES))
def test_cuda_path_equals_cpu_kernels(masks, tmp_path, folder):
    _compare_with_cpu(masks / folder, tmp_path, "cuda", workers=2, **CASES[folder])


def test_rerun_on_device_skips_current_maps(masks, tmp_path):
    first = generate(masks / "nuclei", tmp_path / "o", workers=1, device="torch:cpu")
    again = generate(masks / "nuclei", tmp_path / "o", workers=1, device="torch:cpu")
    assert len(first.done) == 4
    assert again.done == [] and len(again.skipped) == 4


def test_bad_mask_on_device_path_fails_alone(masks, tmp_path):
    (masks / "nuclei" / "broken.tif").write_bytes(b"II*\x00garbage")
    report = generate(masks / "nuclei", tmp_path / "o", workers=1, device="torch:cpu")
    assert report.exit_code == 1
    assert list(report.failed) == ["broken.tif"]
    assert len(report.done) == 4
    assert len(list((tmp_path / "o").glob("nuclei_0*.unet.tif"))) == 4


def test_out_of_memory_falls_back_to_cpu(masks, tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(device_module, "compute_maps_batch", no_memory)
    messages = []
    report = generate(
        masks / "nuclei",
        tmp_path / "dev",
        workers=1,
        device="torch:cpu",
        log=lambda level, text: messages.append((level, text)),
    )
    assert report.exit_code == 0 and len(report.done) == 4
    assert any(level == logging.WARNING and "on the CPU" in text for level, text in messages)
    generate(masks / "nuclei", tmp_path / "cpu", workers=1, device="cpu")
    expected, got = _maps(tmp_path / "cpu"), _maps(tmp_path / "dev")
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_other_device_errors_are_not_swallowed(masks, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("an actual bug")

    monkeypatch.setattr(device_module, "compute_maps_batch", broken)
    with pytest.raises(RuntimeError, match="an actual bug"):
        generate(masks / "nuclei", tmp_path / "o", workers=1, device="torch:cpu")


def test_resolve_device():
    assert resolve_device("cpu") is None
    assert resolve_device("torch:cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
    else:
        assert resolve_device("auto") is None
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_batch_size_must_be_positive(masks, tmp_path):
    with pytest.raises(ValueError, match="batch size"):
        generate(masks / "nuclei", tmp_path / "o", batch_size=0)


def test_public_kernels_keep_tensors_on_their_device():
    labels = np.zeros((24, 30), np.int32)
    labels[3:10, 3:10], labels[3:10, 13:20] = 4, 9
    tensor = torch.from_numpy(labels)
    for function in (
        weightmaps.unet_weight_map,
        weightmaps.edge_weight_map,
        weightmaps.balance_weight_map,
    ):
        out = function(tensor)
        assert isinstance(out, torch.Tensor)
        assert out.device == tensor.device and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), function(labels), rtol=0, atol=1e-5 * W0)
