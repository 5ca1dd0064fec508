"""The backends every kernel suite runs on, so that a test is written once.

A backend is one namespace of kernels and the array type it takes: numpy
(:mod:`weightmaps`), torch on the CPU and on CUDA
(:mod:`weightmaps.torch_kernels`), dask (:mod:`weightmaps.chunked`) with odd,
uneven chunks so that every halo crosses chunk edges. A test takes numpy
inputs and calls ``backend.unet_weight_map(labels, sigma=2.0)``: the call
hands every numpy array (positional or keyword) over as that backend's array
type, checks what comes back is of that type (a tensor on the device, a lazy
dask array with the input's chunks) and returns it as numpy.

A test module picks the backends of its kernel with ``backend_fixture``::

    backend = backend_fixture("unet_weight_map")            # every backend that has it
    twin = backend_fixture("unet_weight_map", twins=True)   # all but numpy

A backend without a kernel is left out of that fixture's parameters (sdf has
no dask twin; a missing extra, torch or dask, leaves its backends out). CUDA
runs under the ``gpu`` marker and skips without a device.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

# The chunk length along each axis, in turn: odd, different from axis to
# axis, and smaller than most halos, so chunk edges fall inside objects.
DASK_CHUNKS = (7, 13, 11)

# Kernels whose numpy and torch versions live outside the public namespaces.
_NUMPY_EXTRA = {
    "signed_distance_map": "weightmaps.kernels.sdf",
    "boundary_distance_map": "weightmaps.kernels.sdf",
    "skeleton_map": "weightmaps.kernels.skeleton",
    "unet_weight_map_falk": "weightmaps.kernels.falk",
}
_TORCH_EXTRA = {
    "signed_distance_map": ("weightmaps.kernels.sdf_torch", "signed_distance_map_torch"),
    "boundary_distance_map": ("weightmaps.kernels.sdf_torch", "boundary_distance_map_torch"),
}


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _cuda_available() -> bool:
    if not _installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


class Backend:
    """One namespace of kernels; attribute access gives a numpy-in, numpy-out call."""

    name: str
    marks: tuple = ()

    def kernel(self, fn_name: str) -> Callable | None:
        """The backend's own function of that name, or None if it has none."""
        raise NotImplementedError

    def to_backend(self, array: np.ndarray) -> Any:
        raise NotImplementedError

    def to_numpy(self, result: Any, first_input: Any) -> Any:
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        yield

    @property
    def is_numpy(self) -> bool:
        return self.name == "numpy"

    def has(self, *fn_names: str) -> bool:
        return all(self.kernel(n) is not None for n in fn_names)

    def __getattr__(self, fn_name: str) -> Callable:
        if fn_name.startswith("_"):
            raise AttributeError(fn_name)
        fn = self.kernel(fn_name)
        if fn is None:
            raise AttributeError(f"the {self.name} backend has no {fn_name}")

        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(self._convert(a) for a in args)
            kwargs = {k: self._convert(v) for k, v in kwargs.items()}
            first = next((a for a in args if not isinstance(a, (int, float, str))), None)
            with self.running(), warnings.catch_warnings():
                # The suites' 3-D inputs are volumes: the torch kernels' warning
                # that a batch of 2-D masks looks the same has nothing to say here.
                warnings.filterwarnings("ignore", message=".* is read as one volume")
                return self.to_numpy(fn(*args, **kwargs), first)

        call.__name__ = fn_name
        return call

    def _convert(self, value: Any) -> Any:
        return self.to_backend(value) if isinstance(value, np.ndarray) else value

    def __repr__(self) -> str:
        return f"<{self.name} backend>"


class NumpyBackend(Backend):
    name = "numpy"

    def kernel(self, fn_name: str) -> Callable | None:
        import weightmaps

        if fn_name in _NUMPY_EXTRA:
            return getattr(importlib.import_module(_NUMPY_EXTRA[fn_name]), fn_name)
        return getattr(weightmaps, fn_name, None) if fn_name in weightmaps.__all__ else None

    def to_backend(self, array: np.ndarray) -> np.ndarray:
        return array

    def to_numpy(self, result: Any, first_input: Any) -> Any:
        return result


class TorchBackend(Backend):
    def __init__(self, device: str) -> None:
        self.device = device
        self.name = "torch-cpu" if device == "cpu" else device
        if device != "cpu":
            self.marks = (
                pytest.mark.gpu,
                pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device"),
            )

    def kernel(self, fn_name: str) -> Callable | None:
        if not _installed("torch"):
            return None
        if fn_name in _TORCH_EXTRA:
            module, attr = _TORCH_EXTRA[fn_name]
            return getattr(importlib.import_module(module), attr)
        namespace = importlib.import_module("weightmaps.torch_kernels")
        return getattr(namespace, fn_name) if fn_name in namespace.__all__ else None

    def to_backend(self, array: np.ndarray) -> Any:
        import torch

        if array.dtype in (np.uint16, np.uint32):  # torch has no arithmetic on these
            array = array.astype(np.int64)
        array = np.ascontiguousarray(array)
        if any(stride < 0 for stride in array.strides):  # a flipped array of length-1 axes
            array = array.copy()
        # Shares memory on the CPU, so a kernel writing into its input would show.
        return torch.from_numpy(array).to(self.device)

    def to_numpy(self, result: Any, first_input: Any) -> Any:
        import torch

        assert not isinstance(result, np.ndarray), "a torch kernel returned numpy"
        if not isinstance(result, torch.Tensor):
            return result  # counts, not an array
        assert result.device.type == torch.device(self.device).type
        return result.cpu().numpy()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        # On a shared CPU, torch's OpenMP threads wait for each other at every
        # operation; a U-Net map is ~1000 small ones, which then take seconds.
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class DaskBackend(Backend):
    name = "dask"

    def kernel(self, fn_name: str) -> Callable | None:
        if not _installed("dask"):
            return None
        namespace = importlib.import_module("weightmaps.chunked")
        return getattr(namespace, fn_name) if fn_name in namespace.__all__ else None

    def to_backend(self, array: np.ndarray) -> Any:
        import dask.array as da

        chunks = tuple(
            max(1, min(DASK_CHUNKS[axis % len(DASK_CHUNKS)], n))
            for axis, n in enumerate(array.shape)
        )
        return da.from_array(array, chunks=chunks)

    def to_numpy(self, result: Any, first_input: Any) -> Any:
        import dask.array as da

        assert not isinstance(result, np.ndarray), "a chunked kernel returned numpy, not lazy"
        if not isinstance(result, da.Array):
            return result  # counts, computed by the kernel
        if isinstance(first_input, da.Array) and result.shape == first_input.shape:
            assert result.chunks == first_input.chunks
        return result.compute()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        # Deterministic and cheap on a small machine; the chunking is what is tested.
        import dask

        with dask.config.set(scheduler="synchronous"):
            yield


NUMPY = NumpyBackend()
BACKENDS = (NUMPY, TorchBackend("cpu"), DaskBackend(), TorchBackend("cuda"))


def backends_with(*fn_names: str, twins: bool = False) -> list:
    """pytest params: every backend that has all of ``fn_names`` (``twins``: but numpy)."""
    return [
        pytest.param(b, id=b.name, marks=b.marks)
        for b in BACKENDS
        if b.has(*fn_names) and not (twins and b.is_numpy)
    ]


def backend_fixture(*fn_names: str, twins: bool = False, name: str | None = None):
    """A fixture over :func:`backends_with`, named ``name`` (default ``twin`` or ``backend``).

    Module scope, as a backend holds no state (and hypothesis refuses
    function-scoped fixtures).
    """

    @pytest.fixture(
        params=backends_with(*fn_names, twins=twins),
        scope="module",
        name=name or ("twin" if twins else "backend"),
    )
    def fixture(request: pytest.FixtureRequest) -> Backend:
        return request.param

    return fixture


def synchronous_dask_fixture():
    """An autouse fixture for a dask twin's own tests: the synchronous scheduler."""

    @pytest.fixture(autouse=True, name="synchronous_scheduler")
    def fixture() -> Iterator[None]:
        import dask

        with dask.config.set(scheduler="synchronous"):
            yield

    return fixture


def assert_agrees_with_numpy(backend: Backend, got: np.ndarray, want: np.ndarray, *, atol: float):
    """A twin's result against numpy's, within what its module promises.

    Torch computes in its own arithmetic: within ``atol``, the bound the
    kernels document (``1e-5 * w0`` for U-Net, ``1e-5`` for edge and
    balance). Dask runs the numpy kernel on each block grown by its halo, so
    only the rounding of a differently cut computation may differ: within
    ``atol / 10``.
    """
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    bound = atol / 10 if isinstance(backend, DaskBackend) else atol
    np.testing.assert_allclose(got, want, rtol=0, atol=bound)


# ----------------------------------------------------------------------------
# For the torch twins' own tests (batches, budgets, devices)
# ----------------------------------------------------------------------------


def device_fixture():
    """A fixture ``device``: "cpu", and "cuda" under the ``gpu`` marker; one CPU thread."""
    params = [
        pytest.param(b.device, id=b.device, marks=b.marks)
        for b in BACKENDS
        if isinstance(b, TorchBackend)
    ]

    @pytest.fixture(params=params, name="device")
    def fixture(request: pytest.FixtureRequest) -> Iterator[str]:
        backend = next(b for b in BACKENDS if getattr(b, "device", None) == request.param)
        with backend.running():
            yield request.param

    return fixture


def on(array: np.ndarray, device: str):
    """The array as a tensor on ``device`` (uint16/uint32 widened, as torch lacks them)."""
    return TorchBackend(device).to_backend(array)


def check_tensor(got, want: np.ndarray, device: str, atol: float) -> None:
    """A float32 tensor on ``device`` of ``want``'s shape and values."""
    import torch

    assert isinstance(got, torch.Tensor)
    assert got.dtype == torch.float32
    assert got.device.type == torch.device(device).type
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=0, atol=atol)
