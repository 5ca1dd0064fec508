"""Kernels split across threads (weightmaps/_shared/threads.py) give the bytes of one thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import random_instances

import weightmaps._shared.threads
import weightmaps.kernels.nearest
from weightmaps import edge_weight_map, unet_weight_map
from weightmaps._shared.threads import kernel_threads, split_range, thread_count
from weightmaps.kernels.edge import box_sum


@pytest.fixture
def split_everything(monkeypatch):
    """Every pass split, however small the image."""
    monkeypatch.setattr(weightmaps._shared.threads, "PARALLEL_PIXELS", 1)


CASES = [
    ((70, 2100), None),  # rows of the last pass split by blocks of 1024
    ((12, 40, 60), None),
    ((12, 40, 60), (2.0, 0.5, 1.0)),
    ((10, 30, 40), (1.0, 0.6, 0.1625)),  # float64 accumulators
    ((40, 12), None),  # pixel-at-a-time passes
]


@pytest.mark.parametrize(("shape", "spacing"), CASES)
@pytest.mark.parametrize("threads", [2, 3])
def test_unet_threads_same_bytes(split_everything, monkeypatch, shape, spacing, threads):
    labels = random_instances(shape, 40, seed=31).astype(np.uint16)
    one = unet_weight_map(labels, sigma=3.0, spacing=spacing)
    with kernel_threads(threads):
        np.testing.assert_array_equal(unet_weight_map(labels, sigma=3.0, spacing=spacing), one)
        # Small slabs and one-line groups of the middle pass, across threads too.
        monkeypatch.setattr(weightmaps.kernels.nearest, "_BLOCK_PIXELS", 1)
        np.testing.assert_array_equal(unet_weight_map(labels, sigma=3.0, spacing=spacing), one)


@pytest.mark.parametrize("shape", [(3, 2100), (70, 90), (9, 30, 40), (1, 5, 3000)])
@pytest.mark.parametrize("threads", [2, 3])
def test_box_sum_and_edge_threads_same_bytes(split_everything, shape, threads):
    mask = random_instances(shape, 30, seed=32) > 0
    one_box = box_sum(mask, 7)
    one_edge = edge_weight_map(mask, kernel_size=7)
    with kernel_threads(threads):
        np.testing.assert_array_equal(box_sum(mask, 7), one_box)
        np.testing.assert_array_equal(edge_weight_map(mask, kernel_size=7), one_edge)


def test_threads_belong_to_the_calling_thread():
    seen = []
    with kernel_threads(4):
        worker = threading.Thread(target=lambda: seen.append(thread_count()))
        worker.start()
        worker.join()
        assert thread_count() == 4
    assert seen == [1]  # a Dask thread, say, runs its block on one thread
    assert thread_count() == 1


@pytest.mark.parametrize(
    ("stop", "parts", "align"), [(10, 3, 1), (3000, 2, 1024), (5, 8, 1), (1, 4, 64)]
)
def test_split_range_covers_in_order(stop, parts, align):
    pieces = split_range(stop, parts, align)
    assert pieces[0][0] == 0 and pieces[-1][1] == stop
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
    assert all(lo % align == 0 for lo, _ in pieces)
    assert len(pieces) <= parts
