"""The auto rule that tells binary, semantic and instance masks apart."""

from __future__ import annotations

import numpy as np
import pytest

from weightmaps.masktype import EmptyMaskError, MaskTypeError, infer_mask_type, uniform_pixels
from weightmaps.prepare import prepare_array
from weightmaps.recipe import compute_maps
from weightmaps.settings import MapSettings


def blobs(shape: tuple[int, ...], values: list[int], *, size: int = 6, gap: int = 4) -> np.ndarray:
    """Separate square blobs in a row, one per entry of ``values``."""
    mask = np.zeros(shape, np.uint16)
    for i, value in enumerate(values):
        x = gap + i * (size + gap)
        mask[..., gap : gap + size, x : x + size] = value
    return mask


def test_binary_0_255():
    mask = np.zeros((32, 32), np.uint8)
    mask[4:10, 4:10] = 255
    mask[20:25, 20:30] = 255  # two separate objects of one value: still binary
    assert infer_mask_type(mask) == "binary"


def test_binary_0_1_and_float_whole_numbers():
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 1
    assert infer_mask_type(mask) == "binary"
    assert infer_mask_type(mask.astype(np.float32)) == "binary"


def test_bool():
    mask = np.zeros((16, 16), bool)
    mask[3:6, 3:6] = True
    assert infer_mask_type(mask) == "binary"


def test_instance_one_region_per_id():
    mask = blobs((32, 80), [3, 17, 200, 9])
    assert infer_mask_type(mask) == "instance"
    # Touching instances stay instances.
    mask[4:10, 10:14] = 3
    assert infer_mask_type(mask) == "instance"


def test_instance_3d():
    mask = blobs((5, 32, 60), [1, 2, 5])
    assert infer_mask_type(mask) == "instance"


def test_semantic_with_split_classes():
    # Classes 1 and 2 each occur in two places.
    mask = blobs((32, 100), [1, 2, 1, 2, 3])
    assert infer_mask_type(mask) == "semantic"


def test_many_values_few_split_is_instance():
    # 20 ids, one cut in two pieces (5% split, more than 16 values): instance.
    values = list(range(1, 21)) + [1]
    mask = blobs((20, 250), values, size=4, gap=4)
    assert infer_mask_type(mask) == "instance"


def test_ambiguous_is_refused():
    # 5 values, one of them split (20%): an instance mask with a cut object, or semantic?
    mask = blobs((20, 120), [1, 2, 3, 4, 5, 1])
    with pytest.raises(MaskTypeError, match="ambiguous") as info:
        infer_mask_type(mask)
    assert "mask_type='instance' or mask_type='semantic'" in str(info.value)
    assert not isinstance(info.value, EmptyMaskError)
    # Naming the type resolves it.
    for mask_type in ("instance", "semantic"):
        result = compute_maps(mask, MapSettings(mask_type=mask_type))
        assert result.mask_type == mask_type


def test_jpeg_like_noise_is_refused():
    rng = np.random.default_rng(1)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    ring = np.zeros_like(mask, bool)
    ring[9:31, 9:31] = True
    ring[11:29, 11:29] = False
    mask[ring] = rng.integers(1, 255, ring.sum())  # a 2-pixel compression fringe
    with pytest.raises(MaskTypeError, match="compression noise") as info:
        infer_mask_type(mask)
    assert "'binary'" in str(info.value)
    # Told it is binary, it is thresholded at half the maximum.
    result = compute_maps(mask, MapSettings(mask_type="binary"), kinds=["balance"])
    fg = mask > 127.5
    n1, n0 = int(fg.sum()), int((~fg).sum())
    np.testing.assert_allclose(
        result.maps["balance"], np.where(fg, mask.size / (2 * n1), mask.size / (2 * n0)), rtol=1e-6
    )


def test_float_fractional_is_refused():
    mask = np.zeros((16, 16), np.float32)
    mask[4:8, 4:8] = 0.6
    mask[10:12, 10:12] = 1.0
    with pytest.raises(MaskTypeError, match="fractional"):
        infer_mask_type(mask)
    with pytest.raises(MaskTypeError, match="fractional|whole"):
        compute_maps(mask, MapSettings())
    with pytest.raises(MaskTypeError, match="whole numbers"):
        compute_maps(mask, MapSettings(mask_type="instance"))


def test_float_nan_is_refused():
    mask = np.zeros((8, 8), np.float64)
    mask[2, 2] = np.nan
    with pytest.raises(MaskTypeError):
        infer_mask_type(mask)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, bool])
def test_empty_mask(dtype):
    mask = np.zeros((16, 16), dtype)
    with pytest.raises(EmptyMaskError):
        infer_mask_type(mask)
    with pytest.raises(EmptyMaskError):
        compute_maps(mask, MapSettings())


def test_only_ignore_value_is_empty():
    mask = np.zeros((16, 16), np.uint8)
    mask[:4] = 255
    with pytest.raises(EmptyMaskError):
        infer_mask_type(mask, ignore_value=255)
    for mask_type in ("auto", "binary", "instance"):
        with pytest.raises(EmptyMaskError, match="ignore value 255.*allow empty"):
            compute_maps(mask, MapSettings(ignore_value=255, mask_type=mask_type))
    # In a semantic mask 0 is a class like any other: not empty.
    semantic = compute_maps(mask, MapSettings(ignore_value=255, mask_type="semantic"))
    assert np.all(semantic.maps["balance"][4:] == 1) and np.all(semantic.maps["balance"][:4] == 0)
    # Allowed explicitly, an empty mask gives maps (the U-Net map is w_c = 1).
    result = compute_maps(mask, MapSettings(ignore_value=255, allow_empty=True), kinds=["unet"])
    assert np.all(result.maps["unet"][4:] == 1) and np.all(result.maps["unet"][:4] == 0)


def test_ignore_value_is_not_a_class():
    mask = np.zeros((16, 16), np.uint8)
    mask[2:6, 2:6] = 1
    mask[10:, :] = 255
    assert infer_mask_type(mask, ignore_value=255) == "binary"
    assert infer_mask_type(mask) == "instance"  # without it, 255 is one more region


def test_negative_values_are_refused():
    mask = np.zeros((8, 8), np.int16)
    mask[1:3, 1:3] = -2
    mask[5:7, 5:7] = 3
    with pytest.raises(MaskTypeError, match="negative"):
        infer_mask_type(mask)


# --- masks from public datasets: JPEG, grey-level label sets, raw images ------------


def _jpeg(mask: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer))


def _ellipses(levels: list[int], size: int = 128) -> np.ndarray:
    """Nested ellipses, the outer of levels[0], the inner of the last."""
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for i, level in enumerate(levels):
        ry, rx = size * (0.4 - 0.15 * i), size * (0.3 - 0.1 * i)
        mask[((yy - size / 2) / ry) ** 2 + ((xx - size / 2) / rx) ** 2 < 1] = level
    return mask


@pytest.mark.parametrize("quality", [75, 85, 95])
def test_jpeg_of_a_binary_mask(quality):
    from weightmaps.masktype import lossy_threshold

    mask = _ellipses([255])
    noisy = _jpeg(mask, quality)
    assert len(np.unique(noisy)) > 4  # the noise read as a mask in a lossless file: refused
    with pytest.raises(MaskTypeError, match="compression noise"):
        infer_mask_type(noisy)
    assert lossy_threshold(noisy) == 127.5
    # Read from a JPEG, auto thresholds and says where.
    prepared = prepare_array(noisy, MapSettings(), lossy=True)
    assert prepared.mask_type == "binary" and prepared.threshold == 127.5
    assert np.mean(prepared.values.astype(bool) != (mask > 0)) < 0.01


def test_jpeg_of_a_0_1_mask_cut_at_half_its_level():
    from weightmaps.masktype import lossy_threshold

    mask = _ellipses([1])
    noisy = _jpeg(mask, 75)
    assert noisy.max() >= 2  # noise above the level: half the maximum would lose the object
    assert lossy_threshold(noisy) == 0.5
    prepared = prepare_array(noisy, MapSettings(), lossy=True)
    # A 0/1 mask keeps little through JPEG, but the object is kept; cut at half
    # the maximum it would be nearly gone.
    assert np.mean(prepared.values.astype(bool) != (mask > 0)) < 0.05
    assert np.count_nonzero(noisy > noisy.max() / 2) < 0.2 * np.count_nonzero(mask)


def test_jpeg_with_several_levels_is_refused():
    from weightmaps.masktype import lossy_threshold

    noisy = _jpeg(_ellipses([128, 255]), 85)
    with pytest.raises(MaskTypeError, match=r"2 grey levels besides 0 \(128, 255\)"):
        lossy_threshold(noisy)
    with pytest.raises(MaskTypeError, match="mask_type='binary'"):
        prepare_array(noisy, MapSettings(), lossy=True)
    # Named binary, it is thresholded at half the maximum, the levels merged.
    named = prepare_array(noisy, MapSettings(mask_type="binary"), lossy=True)
    assert named.mask_type == "binary" and named.threshold == 127.5


def test_lossless_grey_level_label_set_is_semantic():
    # An EM label set: 9 evenly spaced grey levels, each a large region, the top one
    # (cytoplasm, say) holding most of the foreground.
    mask = np.full((96, 96), 255, np.uint8)
    for i, level in enumerate([0, 32, 64, 96, 128, 160, 192, 224]):
        row, col = divmod(i, 4)
        mask[8 + row * 44 : 38 + row * 44, 4 + col * 23 : 22 + col * 23] = level
    assert infer_mask_type(mask) == "semantic"
    # Even with every level one blob (which rule 7 would read as instances).
    assert infer_mask_type(_ellipses([128, 255])) == "semantic"
    # Its levels hold uniform regions: not the fringe of compression noise.
    result = compute_maps(mask, MapSettings(), kinds=["balance"])
    assert result.mask_type == "semantic"


def test_noise_fringe_on_lossless_mask_still_refused_and_levels_kept():
    # A fringe of many values, one pixel each, no uniform region: noise.
    rng = np.random.default_rng(3)
    mask = _ellipses([255])
    edge = (uniform_pixels(mask) == 0) & (mask == 0)
    mask[edge] = rng.integers(1, 255, int(edge.sum()))
    with pytest.raises(MaskTypeError, match="compression noise"):
        infer_mask_type(mask)
    # Uneven levels are no display scale: decided by connectivity as before.
    assert infer_mask_type(blobs((20, 60), [5, 200, 201])) == "instance"


def test_intensity_image_is_refused():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    image = 300 + 200 * np.sin(yy / 9) * np.cos(xx / 7) + rng.normal(0, 20, (128, 128))
    image = image.astype(np.uint16)
    assert image.min() > 0 and len(np.unique(image)) > 100
    with pytest.raises(MaskTypeError, match="intensity image") as info:
        infer_mask_type(image)
    message = str(info.value)
    assert "no 0 background" in message and "glob=" in message
    assert "mask_type='instance'" in message
    # Named, it is read as told.
    assert compute_maps(image, MapSettings(mask_type="semantic"), kinds=["balance"]).mask_type == (
        "semantic"
    )
    # A label mask with as many ids is no image.
    labels = blobs((20, 400), list(range(1, 40)), size=6, gap=4)
    assert infer_mask_type(labels) == "instance"


def test_threshold_recorded_only_when_noise_was_cut():
    clean = _ellipses([255])
    assert prepare_array(clean, MapSettings()).threshold is None
    assert prepare_array(clean, MapSettings(), lossy=True).threshold is None
    noisy = _jpeg(clean, 90)
    assert prepare_array(noisy, MapSettings(mask_type="binary")).threshold == 127.5


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_uniform_pixels_match_the_3x3_maximum_and_minimum_filters(monkeypatch, ndim, threads):
    """Oracle: a pixel is uniform where the 3^d maximum equals the 3^d minimum;
    split in slabs over threads (however small the mask) or not."""
    from scipy import ndimage

    import weightmaps._shared.threads
    from weightmaps._shared.threads import kernel_threads

    monkeypatch.setattr(weightmaps._shared.threads, "PARALLEL_PIXELS", 1)
    rng = np.random.default_rng(ndim)
    for _ in range(200):
        shape = tuple(int(n) for n in rng.integers(1, 8, ndim))
        mask = rng.integers(0, int(rng.integers(1, 4)), shape)
        for dtype in (np.uint8, np.uint16, np.int64, bool):
            typed = mask.astype(dtype)
            values = typed.view(np.uint8) if dtype is bool else typed
            high = ndimage.maximum_filter(values, size=3, mode="nearest")
            low = ndimage.minimum_filter(values, size=3, mode="nearest")
            with kernel_threads(threads):
                uniform = uniform_pixels(typed)
            np.testing.assert_array_equal(uniform, high == low)


def test_uniform_pixels_by_hand():
    mask = np.array([[1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1]])
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], bool)
    np.testing.assert_array_equal(uniform_pixels(mask), expected)


def test_distinct_values_match_np_unique_for_every_integer_dtype():
    from weightmaps.masktype import distinct_values

    rng = np.random.default_rng(7)
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64):
        info = np.iinfo(dtype)
        for low, high in ((0, 5), (0, 40), (0, 10**6), (max(info.min, -3), 30)):
            values = rng.integers(low, min(high, info.max) + 1, size=37).astype(dtype)
            found = distinct_values(values.reshape(1, -1))
            np.testing.assert_array_equal(found, np.unique(values))
            assert found.dtype == dtype
