"""The per-kind drawing rules of the preview: a diverging sdf, a skeleton over the mask."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_MASKS
from PIL import Image
from weightmaps.cli.main import main

import weightmaps
from weightmaps.preview import (
    DIVERGING_ANCHORS,
    OVERLAY_COLOUR,
    VIRIDIS_ANCHORS,
    map_panels,
    panel_details,
    parameter_text,
    render_preview,
)


def count(rgb: np.ndarray, colour) -> int:
    return int(np.all(rgb == np.asarray(colour, np.uint8), axis=-1).sum())


def test_map_panels_split_classes_and_give_each_kind_its_style():
    sdf = np.stack([np.full((4, 5), -1.0), np.full((4, 5), 2.0)])
    panels, styles = map_panels({"unet": np.ones((4, 5)), "sdf": sdf, "skeleton": np.eye(4, 5)})
    assert list(panels) == ["unet", "sdf[0]", "sdf[1]", "skeleton"]
    np.testing.assert_array_equal(panels["sdf[1]"], sdf[1])
    assert styles == {
        "unet": "sequential",
        "sdf[0]": "diverging",
        "sdf[1]": "diverging",
        "skeleton": "overlay",
    }
    panels, styles = map_panels({"sdf": sdf[:1], "other": np.zeros((4, 5))})
    assert list(panels) == ["sdf", "other"] and styles["other"] == "sequential"


def test_diverging_panel_is_white_at_zero_and_symmetric():
    # One row: -4, -2, 0, 2 ... drawn 1:1; 0 is the middle anchor exactly.
    values = np.array([[-4.0, -2.0, 0.0, 2.0, 1.0]]).repeat(5, axis=0)
    mask = np.zeros((5, 5), np.uint8)
    out = render_preview(mask, {"sdf": values}, panel_size=5, styles={"sdf": "diverging"})
    white, blue = DIVERGING_ANCHORS[1], DIVERGING_ANCHORS[0]
    assert count(out, white) >= 5  # the zero column (and the bar's middle row)
    assert count(out, blue) >= 5  # -4, the largest magnitude: the blue end
    assert count(out, DIVERGING_ANCHORS[2]) >= 1  # the bar's top: +4
    assert count(out, VIRIDIS_ANCHORS[0]) == 0
    # Without the style, the same map is viridis, with no white at its zero.
    plain = render_preview(mask, {"sdf": values}, panel_size=5)
    assert count(plain, white) == 0 and count(plain, VIRIDIS_ANCHORS[0]) >= 5


def test_overlay_draws_the_skeleton_over_the_dimmed_mask():
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    skeleton = np.zeros((16, 16), np.uint8)
    skeleton[8, 5:11] = 1
    out = render_preview(
        mask, {"skeleton": skeleton}, panel_size=16, styles={"skeleton": "overlay"}
    )
    assert count(out, OVERLAY_COLOUR) == 6
    assert count(out, (127, 127, 127)) == 64 - 6  # the dimmed white foreground
    # Shrunk, a one-pixel line still shows.
    big = np.zeros((512, 512), np.uint8)
    big[100:400, 100:400] = 1
    line = np.zeros((512, 512), np.uint8)
    line[250, 120:380] = 1
    small = render_preview(big, {"skeleton": line}, panel_size=64, styles={"skeleton": "overlay"})
    assert count(small, OVERLAY_COLOUR) > 0


def test_styles_are_checked():
    with pytest.raises(ValueError, match="unknown preview styles"):
        render_preview(np.zeros((4, 4)), {"a": np.zeros((4, 4))}, styles={"a": "rainbow"})


def test_preview_command_draws_the_new_kinds(tmp_path):
    weightmaps.generate(
        SAMPLE_MASKS / "nuclei",
        tmp_path / "maps",
        kinds=["sdf", "skeleton", "unet"],
        workers=1,
        progress=False,
    )
    out = tmp_path / "p.png"
    mask = SAMPLE_MASKS / "nuclei" / "nuclei_01.tif"
    result = CliRunner().invoke(
        main, ["preview", str(mask), "--maps", str(tmp_path / "maps"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "unet, sdf, skeleton" in result.output
    rgb = np.asarray(Image.open(out))
    assert count(rgb, OVERLAY_COLOUR) > 0
    assert count(rgb, DIVERGING_ANCHORS[2]) > 0


def test_target_is_drawn_as_labels_and_details_come_from_parameter_sets():
    panels, styles = map_panels({"unet": np.ones((4, 4)), "target": np.eye(4, dtype=np.int32)})
    assert styles == {"unet": "sequential", "target": "labels"}
    settings = weightmaps.MapSettings(w0=3, sigma=2, separate_touching=True)
    details = panel_details(
        {**panels, "sdf[1]": None},
        {
            "unet": settings.kind_params("unet"),
            "target": settings.kind_params("target"),
            "sdf": settings.kind_params("sdf") | {"max_distance": 8},
        },
    )
    assert details == {
        "unet": "w0=3 sigma=2",
        "target": "carved, connectivity=full",
        "sdf[1]": "max_distance=8",
    }
    assert parameter_text({"kind": "target", "connectivity": 1}) == "carved, connectivity=1"
    assert parameter_text({"kind": "balance", "mode": "median", "scope": "image"}) == (
        "mode=median scope=image"
    )
