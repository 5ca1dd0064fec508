"""render_preview: layout, colour map endpoints, mask colours, slicing, validation."""

from __future__ import annotations

import numpy as np
import pytest

from weightmaps.preview import NAN_COLOUR, VIRIDIS_ANCHORS, label_colours, render_preview

FIRST = VIRIDIS_ANCHORS[0]
LAST = VIRIDIS_ANCHORS[-1]
WHITE = (255, 255, 255)


def count(rgb: np.ndarray, colour) -> int:
    return int(np.all(rgb == np.asarray(colour, np.uint8), axis=-1).sum())


def where(rgb: np.ndarray, colour) -> np.ndarray:
    """(row, col) of every pixel of that colour, in row-major order."""
    return np.argwhere(np.all(rgb == np.asarray(colour, np.uint8), axis=-1))


def square_mask(n: int = 16) -> np.ndarray:
    mask = np.zeros((n, n), np.uint8)
    mask[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1
    return mask


def test_dtype_shape_and_growth_with_panels():
    mask = square_mask()
    one = {"a": np.random.default_rng(0).random(mask.shape)}
    three = {**one, "b": mask * 2.0, "c": -mask.astype(float)}
    out1 = render_preview(mask, one, panel_size=64)
    out3 = render_preview(mask, three, panel_size=64)
    with_image = render_preview(mask, three, panel_size=64, image=mask * 10.0)
    for out in (out1, out3, with_image):
        assert out.dtype == np.uint8
        assert out.ndim == 3 and out.shape[2] == 3
        assert out.flags.writeable
    assert out1.shape[0] == out3.shape[0] == with_image.shape[0]
    assert out1.shape[0] >= 64
    assert out1.shape[1] < out3.shape[1] < with_image.shape[1]
    # Each map panel with its colour bar is at least the panel wide.
    assert out3.shape[1] - out1.shape[1] >= 2 * 64


def test_no_maps_draws_the_mask_alone():
    out = render_preview(square_mask(), {}, panel_size=16)
    assert count(out, WHITE) == 8 * 8


def test_colour_map_endpoints_at_known_positions():
    # Minimum at the top-left pixel, maximum at the bottom-right; with
    # panel_size equal to the input size the panel is drawn 1:1.
    ramp = np.arange(256, dtype=np.float64).reshape(16, 16)
    mask = np.zeros((16, 16), np.uint8)
    out = render_preview(mask, {"ramp": ramp}, panel_size=16)
    # The colour bar has the minimum only at its bottom, beside the panel,
    # so the first first-anchor pixel in row-major order is the panel's
    # top-left corner.
    r0, c0 = where(out, FIRST)[0]
    assert (out[r0 + 15, c0 + 15] == LAST).all()
    assert not (out[r0, c0 + 1] == FIRST).all()  # 1/255 of the way up: another colour

    # Same layout (same captions and labels), values reversed: the corners swap.
    flipped = render_preview(mask, {"ramp": ramp[::-1, ::-1]}, panel_size=16)
    assert (flipped[r0, c0] == LAST).all()
    assert (flipped[r0 + 15, c0 + 15] == FIRST).all()

    # The colour bar to the right runs from the last anchor (top) to the first.
    bar_last = where(out, LAST)
    bar_last = bar_last[bar_last[:, 1] > c0 + 15]
    bar_first = where(out, FIRST)
    bar_first = bar_first[bar_first[:, 1] > c0 + 15]
    assert len(bar_last) and len(bar_first)
    assert bar_last[:, 0].max() < bar_first[:, 0].min()


@pytest.mark.filterwarnings("error")
def test_constant_and_non_finite_maps_do_not_crash():
    mask = square_mask()
    with_nan = np.ones((16, 16))
    with_nan[3, 3] = np.nan
    with_inf = np.zeros((16, 16))
    with_inf[0, 0] = np.inf
    with_inf[1, 1] = 2.0
    maps = {
        "constant": np.full((16, 16), 3.0),
        "all nan": np.full((16, 16), np.nan),
        "nan": with_nan,
        "inf": with_inf,
        "bool": mask.astype(bool),
        "huge": np.where(mask > 0, 1e308, -1e308),
    }
    out = render_preview(mask, maps, panel_size=16)
    assert out.dtype == np.uint8
    # NaN pixels: the whole all-NaN panel and the one pixel of "nan".
    assert count(out, NAN_COLOUR) == 256 + 1
    # Constant maps take the first anchor rather than dividing by zero.
    alone = render_preview(mask, {"constant": np.full((16, 16), 3.0)}, panel_size=16)
    assert count(alone, FIRST) >= 256


def test_3d_draws_the_middle_slice_of_everything():
    depth, mid = 5, 2
    # One id per slice (2 + z): the volume is a label mask, so each slice
    # shows up in its own id colour.
    mask = np.broadcast_to((np.arange(depth) + 2)[:, None, None], (depth, 8, 8)).copy()
    # Map and image are NaN (magenta) everywhere but in the middle slice.
    volume = np.full((depth, 8, 8), np.nan)
    volume[mid] = np.arange(64.0).reshape(8, 8)
    out = render_preview(mask, {"w": volume}, image=volume, panel_size=8)
    colours = label_colours(np.arange(depth) + 2)
    assert count(out, colours[mid]) == 64
    for z in range(depth):
        if z != mid:
            assert count(out, colours[z]) == 0
    assert count(out, NAN_COLOUR) == 0

    first = render_preview(mask, {"w": volume}, image=volume, panel_size=8, slice_index=0)
    assert count(first, colours[0]) == 64
    assert count(first, colours[mid]) == 0
    assert count(first, NAN_COLOUR) == 2 * 64  # image and map of slice 0
    last = render_preview(mask, {}, panel_size=8, slice_index=-1)
    assert count(last, colours[-1]) == 64


def test_3d_names_the_slice_in_a_header_line():
    mask = np.zeros((3, 8, 8), np.uint8)
    flat = render_preview(mask[1], {}, panel_size=8)
    volume = render_preview(mask, {}, panel_size=8)
    titled = render_preview(mask[1], {}, panel_size=8, title="sample")
    assert volume.shape[0] == titled.shape[0] > flat.shape[0]


def test_shape_mismatch_raises_naming_the_shapes():
    mask = square_mask()
    with pytest.raises(ValueError, match=r"\(16, 15\).*\(16, 16\)"):
        render_preview(mask, {"w": np.zeros((16, 15))})
    with pytest.raises(ValueError, match=r"\(16, 16, 5\)"):
        render_preview(mask, {}, image=np.zeros((16, 16, 5)))
    with pytest.raises(ValueError, match=r"\(2, 16, 16\)"):
        render_preview(np.zeros((2, 16, 16)), {"w": np.zeros((16, 16))})
    with pytest.raises(ValueError, match="shape"):
        render_preview(np.zeros(16), {})


def test_other_invalid_arguments_raise():
    mask = square_mask()
    with pytest.raises(ValueError, match="slice_index"):
        render_preview(mask, {}, slice_index=0)
    with pytest.raises(ValueError, match="3-D input only"):
        render_preview(mask, {}, axis=1)
    with pytest.raises(ValueError, match="axis must be"):
        render_preview(np.zeros((3, 4, 4)), {}, axis=3)
    with pytest.raises(ValueError, match="out of range"):
        render_preview(np.zeros((3, 4, 4)), {}, slice_index=3)
    with pytest.raises(ValueError, match="panel_size"):
        render_preview(mask, {}, panel_size=0)
    with pytest.raises(TypeError, match="dtype"):
        render_preview(mask, {"w": np.full(mask.shape, "x")})


def test_image_grey_and_rgb_accepted():
    mask = square_mask()
    grey = np.arange(256.0).reshape(16, 16)
    out = render_preview(mask, {}, image=grey, panel_size=16)
    assert count(out, (0, 0, 0)) >= 1 and count(out, WHITE) >= 1 + 64
    rgb = np.zeros((16, 16, 3))
    rgb[..., 0] = 5.0  # min..max over all channels: pure red
    assert count(render_preview(mask, {}, image=rgb, panel_size=16), (255, 0, 0)) == 256


def test_same_id_same_colour_across_calls():
    a = np.zeros((16, 16), np.int32)
    a[:4, :4], a[8:, 8:] = 7, 3
    b = np.zeros((20, 12), np.int64)
    b[:5, :], b[10:12, :3], b[15:, 6:] = 9, 7, 11
    colour = label_colours([7])[0]
    assert count(render_preview(a, {}, panel_size=16), colour) == 16
    assert count(render_preview(b, {}, panel_size=20), colour) == 6
    # A fixed palette: pinned, so a change to the hash shows up here.
    assert label_colours([0, 1, 2, 3, 1000]).tolist() == [
        [0, 0, 0],
        [255, 255, 255],
        [38, 210, 44],
        [111, 197, 248],
        [126, 20, 219],
    ]


def test_label_colours_are_distinct_and_never_black_or_white():
    colours = label_colours(np.arange(2, 200))
    assert len(np.unique(colours, axis=0)) == len(colours)
    assert not np.any(np.all(colours == 0, axis=1))
    assert not np.any(np.all(colours == 255, axis=1))
    assert label_colours(np.array([[5, 6]], np.uint64)).shape == (1, 2, 3)


@pytest.mark.parametrize(
    "mask",
    [square_mask().astype(bool), square_mask() * 255, square_mask() * 42, square_mask() * 1.0],
    ids=["bool", "0-255", "single-id", "float"],
)
def test_binary_mask_is_white_on_black(mask):
    out = render_preview(mask, {}, panel_size=16)
    assert count(out, WHITE) == 64
    assert count(out, (0, 0, 0)) == 256 - 64


def test_small_mask_magnified_and_large_one_shrunk_keeping_aspect():
    # 16 x 16 at 64: every pixel a 4 x 4 block.
    assert count(render_preview(square_mask(), {}, panel_size=64), WHITE) == 64 * 16
    # 300 x 150, all foreground, at 100: a 100 x 50 white panel.
    tall = np.ones((300, 150), bool)
    assert count(render_preview(tall, {"w": tall * 1.0}, panel_size=100), WHITE) == 100 * 50
    # None draws 1:1.
    assert count(render_preview(square_mask(), {}, panel_size=None), WHITE) == 64


def test_soft_mask_is_grey():
    soft = np.full((16, 16), 0.5)
    assert count(render_preview(soft, {}, panel_size=16), (128, 128, 128)) == 256


def test_rgba_image_is_drawn_without_its_alpha():
    # Microscopy images often come as RGBA (an opaque alpha); grey plus alpha too.
    mask = square_mask()
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 1] = 200  # green
    rgba[..., 3] = 255  # alpha, which would otherwise set the image's maximum
    out = render_preview(mask, {}, image=rgba, panel_size=16)
    np.testing.assert_array_equal(out, render_preview(mask, {}, image=rgba[..., :3], panel_size=16))
    assert count(out, (0, 255, 0)) == 256  # min..max over the colour channels only
    grey_alpha = np.stack([np.arange(256.0).reshape(16, 16), np.full((16, 16), 255.0)], -1)
    np.testing.assert_array_equal(
        render_preview(mask, {}, image=grey_alpha, panel_size=16),
        render_preview(mask, {}, image=grey_alpha[..., 0], panel_size=16),
    )


def test_3d_slice_along_another_axis():
    # Ids 2 + y along axis 1: a cut across y at index 3 shows id 5 alone.
    mask = np.broadcast_to((np.arange(6) + 2)[None, :, None], (4, 6, 8)).copy()
    colours = label_colours(np.arange(6) + 2)
    out = render_preview(mask, {}, panel_size=None, axis=1, slice_index=3)
    assert count(out, colours[3]) == 4 * 8  # the (z, x) slice, drawn 1:1
    assert all(count(out, colours[y]) == 0 for y in range(6) if y != 3)
    middle = render_preview(mask, {}, panel_size=None, axis=2)  # x = 4 of 8: every id
    assert all(count(middle, colours[y]) == 4 for y in range(6))


def test_labels_style_draws_ids_in_the_mask_colours():
    mask = square_mask()
    target = np.zeros((16, 16), np.int32)
    target[4:12, 4:8], target[4:12, 8:12] = 3, 9
    out = render_preview(mask, {"target": target}, panel_size=16, styles={"target": "labels"})
    colours = label_colours([3, 9])
    assert count(out, colours[0]) == count(out, colours[1]) == 32
    assert count(out, FIRST) == 0  # no viridis, no bar


def test_details_add_a_second_caption_line():
    mask = square_mask()
    maps = {"unet": mask * 1.0}
    plain = render_preview(mask, maps, panel_size=16)
    detailed = render_preview(mask, maps, panel_size=16, details={"unet": "w0=10 sigma=5"})
    other = render_preview(mask, maps, panel_size=16, details={"unet": "w0=3 sigma=2"})
    assert detailed.shape[0] > plain.shape[0]  # one more line
    assert detailed.shape[0] == other.shape[0] and not np.array_equal(detailed, other)
    # A long line widens its tile rather than running into the next one.
    long = render_preview(mask, maps, panel_size=16, details={"unet": "x" * 80})
    assert long.shape[1] > detailed.shape[1]
    # An empty line is no line.
    empty = render_preview(mask, maps, panel_size=16, details={"unet": ""})
    np.testing.assert_array_equal(empty, plain)
