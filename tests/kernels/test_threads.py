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
    # An integer mask, its ignored pixels (2) neither foreground nor weighted.
    ids = (random_instances(shape, 30, seed=33) % 3).astype(np.uint8)
    one_ids = edge_weight_map(ids, kernel_size=7, ignore_index=2)
    with kernel_threads(threads):
        split = edge_weight_map(ids, kernel_size=7, ignore_index=2)
    assert split.tobytes() == one_ids.tobytes()


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


def test_run_parts_runs_every_part_and_keeps_its_threads():
    from weightmaps._shared.threads import run_parts

    def names() -> tuple[list[int], set[str]]:
        done: list[int] = []
        who: set[str] = set()
        lock = threading.Lock()

        def work(part: int) -> None:
            with lock:
                done.append(part)
                who.add(threading.current_thread().name)

        run_parts(work, list(range(6)), 3)
        return sorted(done), who

    done, first = names()
    assert done == list(range(6))
    assert threading.current_thread().name in first  # the caller runs a part itself
    _, second = names()
    pooled = {name for name in first | second if name.startswith("weightmaps-kernel")}
    assert len(pooled) <= 2  # two pool threads at most, the same ones each call


def test_run_parts_raises_the_error_once_every_part_has_stopped():
    from weightmaps._shared.threads import run_parts

    finished = []
    slow_started = threading.Event()

    def work(part: int) -> None:
        if part == 0:
            slow_started.wait(5)
            raise ValueError("part 0 failed")
        slow_started.set()
        threading.Event().wait(0.2)
        finished.append(part)

    with pytest.raises(ValueError, match="part 0 failed"):
        run_parts(work, [0, 1], 2)
    assert finished == [1]  # not left running on the shared arrays


def test_a_forked_child_runs_parts_on_its_own_pool():
    import multiprocessing
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("fork start method")
    from weightmaps._shared.threads import run_parts

    run_parts(lambda part: None, [0, 1], 2)  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        # Without a pool of its own the child would wait forever on threads
        # that were not forked with it.
        assert pool.apply_async(_sum_on_threads).get(timeout=60) == 45


def _sum_on_threads() -> int:
    from weightmaps._shared.threads import run_parts

    total = []
    run_parts(total.append, list(range(10)), 2)
    return sum(total)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64, bool])
def test_counting_and_painting_split_give_bincount_and_take(split_everything, threads, dtype):
    from weightmaps._shared.counting import count_ids, paint_ids

    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 1000):
        ids = rng.integers(0, 2 if dtype is bool else 9, size).astype(dtype)
        table = rng.random(9).astype(np.float32)
        as_intp = ids.astype(np.intp)
        with kernel_threads(threads):
            counts = count_ids(ids.reshape(1, -1), minlength=4)
            painted = paint_ids(table, as_intp.reshape(-1, 1))
        np.testing.assert_array_equal(counts, np.bincount(as_intp, minlength=4))
        assert counts.dtype == np.intp
        np.testing.assert_array_equal(painted, table[as_intp].reshape(-1, 1))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64])
def test_counting_runs_gives_bincount(split_everything, threads, dtype):
    """Ids in runs (as in masks) whose ends fall on and across the parts' seams,
    the largest id of the dtype, one id only, and no ids at all."""
    from weightmaps._shared.counting import count_ids

    rng = np.random.default_rng(4)
    top = min(np.iinfo(dtype).max, 70000)
    lengths = rng.integers(1, 40, 300)
    ids = np.repeat(rng.integers(0, top + 1, lengths.size), lengths).astype(dtype)
    ids[-3:] = top
    for values in (ids, ids[:1], np.full(1001, 5, dtype), ids[:0]):
        expected = np.bincount(values.astype(np.intp), minlength=3)
        with kernel_threads(threads):
            counts = count_ids(values, minlength=3)
        assert counts.dtype == expected.dtype
        np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize("threads", [1, 3])
def test_counting_refuses_negative_ids(split_everything, threads):
    from weightmaps._shared.counting import count_ids

    with kernel_threads(threads), pytest.raises(ValueError, match="non-negative"):
        count_ids(np.array([3, 2, 5, -1], np.int16))  # in the last part on 3 threads


def test_maps_of_a_mask_split_over_threads_give_the_bytes_of_one(split_everything):
    from weightmaps import MapSettings, compute_maps

    labels = random_instances((60, 70), 25, seed=5)
    one = compute_maps(labels, MapSettings())
    with kernel_threads(3):
        split = compute_maps(labels, MapSettings())
    assert one.mask_type == split.mask_type == "instance"
    assert one.maps.keys() == split.maps.keys() == {"unet", "edge", "balance"}
    for kind in one.maps:
        assert one.maps[kind].tobytes() == split.maps[kind].tobytes(), kind
    assert one.counts == split.counts and one.warnings == split.warnings
