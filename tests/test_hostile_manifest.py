"""A manifest from a stranger, and maps replaced under it.

``OUT/weightmaps.json`` may be truncated, nested a million deep, hold fields of
the wrong type, be a FIFO or a symlink. ``generate``, ``check`` and ``preview
--maps`` then stop with exit 3 and one line naming the file (and the field), and
``WeightMapDataset`` raises :class:`ManifestError` saying the same; nothing is
written. A map replaced by other bytes of the same size is found by the SHA-256
recorded when it was written (the Dataset's side is in test_data.py).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import SAMPLE_MASKS
from weightmaps.cli.main import main

import weightmaps
from weightmaps.data import WeightMapDataset
from weightmaps.io.writing import write_tiff_atomic
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest, ManifestError, check_manifest

NUCLEI_00 = "nuclei_00.tif"


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def generated(root: Path, **options) -> tuple[Path, Path]:
    masks, out = root / "masks", root / "out"
    shutil.copytree(SAMPLE_MASKS / "nuclei", masks)
    options.setdefault("kinds", ("unet",))
    report = weightmaps.generate(masks, out, workers=1, progress=False, **options)
    assert report.exit_code == 0, report.summary()
    return masks, out


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """Nuclei masks and their unet maps; copied by ``folders`` before any test breaks them."""
    return generated(tmp_path_factory.mktemp("made"))


@pytest.fixture
def folders(made, tmp_path) -> tuple[Path, Path]:
    masks, out = (Path(shutil.copytree(p, tmp_path / p.name)) for p in made)
    return masks, out


def outputs_of(out: Path) -> dict[str, tuple[int, int]]:
    """Every map in OUT by (inode, mtime): a rewrite changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.tif")}


def assert_refused(masks: Path, out: Path, *needles: str) -> None:
    """generate, check, preview --maps: exit 3, one line naming the manifest; the Dataset
    raises ManifestError with the same; OUT is left as it was."""
    manifest = out / MANIFEST_NAME
    before = outputs_of(out)
    text = manifest.read_bytes() if manifest.is_file() and not manifest.is_symlink() else None
    png = out.parent / "preview.png"
    commands = {
        "generate": ("generate", masks, out, "--workers", 1),
        "check": ("check", masks, out),
        "preview": ("preview", masks / NUCLEI_00, "--maps", out, "-o", png),
    }
    for name, args in commands.items():
        result = cli(*args)
        assert result.exit_code == 3, (name, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            name,
            result.exception,
        )
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith(f"error: {manifest}: bad manifest: "), (name, lines[0])
        for needle in needles:
            assert needle in lines[0], (name, needle, lines[0])
    with pytest.raises(ManifestError) as info:
        WeightMapDataset(masks, out)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{manifest}: bad manifest: ")
    for needle in needles:
        assert needle in message
    assert not png.exists()
    assert outputs_of(out) == before
    if text is not None:
        assert manifest.read_bytes() == text


# --- not parseable, or nested too deep -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
    ],
    ids=["lists-open", "lists-closed", "objects-open", "objects-closed"],
)
def test_deeply_nested_json_is_exit_3(folders, text):
    masks, out = folders
    (out / MANIFEST_NAME).write_text(text)
    assert_refused(masks, out, "nested too deeply")


def test_nested_deep_but_parseable_inside_is_exit_3(folders):
    """Within what the JSON parser accepts, yet deeper than any field the manifest has."""
    masks, out = folders
    path = out / MANIFEST_NAME
    data = json.loads(path.read_text())
    deep: object = 1
    for _ in range(500):
        deep = [deep]
    data["masks"][NUCLEI_00]["notes"] = deep
    path.write_text(json.dumps(data))
    assert_refused(masks, out, f"masks['{NUCLEI_00}'].notes", "nested deeper")


@pytest.mark.parametrize("text", ["", "{not json", "\xff\xfe", "null", "[]", '{"format": 1}'])
def test_not_a_manifest_is_exit_3(folders, text):
    masks, out = folders
    (out / MANIFEST_NAME).write_text(text, encoding="latin-1")
    assert_refused(masks, out)


# --- fields of the wrong type ----------------------------------------------------------


def mutate(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


RECORD = ("masks", NUCLEI_00)
UNET = (*RECORD, "outputs", "unet")

WRONG = [
    (("settings",), [1], "settings: expected an object"),
    (("settings", "sigma"), "abc", "settings.sigma: expected a number, got 'abc'"),
    (("settings", "sigma"), -1, "sigma must be finite and > 0"),
    (("settings", "w0"), True, "settings.w0: expected a number, got True"),
    (("settings", "kinds"), 5, "settings.kinds: expected a list"),
    (("settings", "kinds"), ["unet", "nope"], "settings.kinds[1]"),
    (("settings", "chunked_above"), -5, "settings.chunked_above"),
    (("settings", "spacing"), {"a": 1}, "settings.spacing"),
    (("parameter_sets",), [[1, 2]], "parameter_sets: expected an object"),
    (("parameter_sets", "x"), [1], "parameter_sets['x']: expected an object"),
    (("dataset",), 5, "dataset: expected an object, got 5"),
    (("dataset",), {"weights": {"1": "x"}}, "dataset.weights['1']"),
    (("dataset",), {"counts": {"pixels": {}}}, "dataset.counts: no 'image_pixels'"),
    (("tool_version",), [], "tool_version: expected a string"),
    (("masks",), [], "masks: expected an object"),
    (RECORD, "x", f"masks['{NUCLEI_00}']: expected an object"),
    ((*RECORD, "sha256"), 5, f"masks['{NUCLEI_00}'].sha256: expected a string"),
    ((*RECORD, "size"), 1.5, f"masks['{NUCLEI_00}'].size"),
    ((*RECORD, "mask_type"), [1], f"masks['{NUCLEI_00}'].mask_type"),
    ((*RECORD, "mask_type"), "blobs", f"masks['{NUCLEI_00}'].mask_type"),
    ((*RECORD, "count_cache"), 5, f"masks['{NUCLEI_00}'].count_cache"),
    ((*RECORD, "count_cache"), {"sha256": "x"}, "count_cache: no 'params'"),
    ((*RECORD, "outputs"), [], f"masks['{NUCLEI_00}'].outputs: expected an object"),
    ((*RECORD, "outputs", "nope"), {"path": "x.tif"}, "outputs['nope']"),
    (UNET, [], f"masks['{NUCLEI_00}'].outputs['unet']: expected an object"),
    ((*UNET, "bytes"), "x", f"masks['{NUCLEI_00}'].outputs['unet'].bytes"),
    ((*UNET, "bytes"), -1, "outputs['unet'].bytes: expected a whole number >= 0, got -1"),
    ((*UNET, "path"), 5, "outputs['unet'].path: unsafe path"),
    ((*UNET, "sha256"), "abc", "outputs['unet'].sha256: expected a SHA-256"),
    ((*UNET, "shape"), [256, "x"], "outputs['unet'].shape[1]"),
]


@pytest.mark.parametrize(("where", "value", "needle"), WRONG, ids=[n for _, _, n in WRONG])
def test_field_of_the_wrong_type_is_exit_3(folders, where, value, needle):
    masks, out = folders

    def change(data):
        node = data
        for key in where[:-1]:
            node = node.setdefault(key, {}) if node.get(key) is None else node[key]
        node[where[-1]] = value

    mutate(out / MANIFEST_NAME, change)
    assert_refused(masks, out, needle)


@pytest.mark.parametrize(
    "key",
    ["a\nb", "x" * 100_000, "../" * 50_000 + "x.tif"],
    ids=["newline", "long", "long-unsafe"],
)
def test_message_stays_one_short_line(folders, key):
    masks, out = folders

    def change(data):
        data["masks"][key] = {"outputs": {"unet": {"path": key}}, key: [[[[[1]]]]]}

    mutate(out / MANIFEST_NAME, change)
    assert_refused(masks, out)
    with pytest.raises(ManifestError) as info:
        Manifest.load(out / MANIFEST_NAME)
    assert len(str(info.value)) < 300 + len(str(out))


def test_unsafe_paths_are_exit_3(folders):
    masks, out = folders
    mutate(out / MANIFEST_NAME, lambda d: d["masks"].update({"../x.tif": {"outputs": {}}}))
    assert_refused(masks, out, "unsafe path")


# --- every field is checked ------------------------------------------------------------


def leaves(node, where=()):
    """(path, value) of every value in a parsed manifest, containers included."""
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*where, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*where, i))


def test_every_field_a_run_writes_is_type_checked(tmp_path):
    """Each field of a full manifest replaced by a value of another type: refused, named."""
    masks, out = generated(
        tmp_path,
        kinds=("unet", "edge", "balance"),
        separate_touching=True,
        balance_scope="dataset",
        class_weights=(1.0, 2.0),
        spacing=(1.0, 1.0),
        edge_size=(64, 64),
        ignore_value=7,
        connectivity=1,
    )
    data = json.loads((out / MANIFEST_NAME).read_text())
    record = data["masks"][NUCLEI_00]
    assert {"count_cache", "outputs", "size", "sha256", "spacing"} <= record.keys()
    assert {"unet", "edge", "balance", "target"} <= record["outputs"].keys()
    check_manifest(data)
    checked = 0
    for where, _ in leaves(data):
        # Records of masks other than the first, and parameter sets (free-form, but
        # shallow: see the nesting test), would only repeat what is tested.
        if not where or where[0] == "parameter_sets" or where[-1] == "format":
            continue
        if where[0] == "masks" and len(where) > 1 and where[1] != NUCLEI_00:
            continue
        broken = copy.deepcopy(data)
        node = broken
        for key in where[:-1]:
            node = node[key]
        # An object where it held none; a number in place of an object (one
        # whose fields are all optional could take {"x": [1]} as unknown fields).
        node[where[-1]] = 5 if isinstance(node[where[-1]], dict) else {"x": [1]}
        with pytest.raises(ManifestError) as info:
            check_manifest(broken)
        checked += 1
        last = where[-1]
        assert str(last) in str(info.value), (where, str(info.value))
    assert checked > 60


def test_parameter_sets_may_only_be_shallow(made):
    _, out = made
    data = json.loads((out / MANIFEST_NAME).read_text())
    digest = next(iter(data["parameter_sets"]))
    data["parameter_sets"][digest]["sigma"] = [[[[[5]]]]]
    with pytest.raises(ManifestError, match=rf"parameter_sets\['{digest}'\].sigma: nested deeper"):
        check_manifest(data)


# --- not a regular file ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_manifest_does_not_block(folders):
    masks, out = folders
    (out / MANIFEST_NAME).unlink()
    os.mkfifo(out / MANIFEST_NAME)
    # In a child process, so that a regression hangs one subprocess, not the suite.
    code = (
        "import sys; from weightmaps.pipeline.manifest import Manifest; Manifest.load(sys.argv[1])"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(out / MANIFEST_NAME)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode != 0 and "not a regular file" in child.stderr
    assert_refused(masks, out, "not a regular file")


def test_symlinked_manifest_is_refused(folders, tmp_path):
    masks, out = folders
    elsewhere = tmp_path / "elsewhere.json"
    (out / MANIFEST_NAME).rename(elsewhere)
    (out / MANIFEST_NAME).symlink_to(elsewhere)
    assert_refused(masks, out, "symbolic link")


def test_force_starts_over_from_a_bad_manifest(folders):
    masks, out = folders
    (out / MANIFEST_NAME).write_text("[" * 100_000)
    result = cli("generate", masks, out, "--workers", 1, "--kinds", "unet", "--force")
    assert result.exit_code == 0, result.output
    assert Manifest.load(out / MANIFEST_NAME) is not None


# --- maps replaced under the manifest ----------------------------------------------------
#
# Every TIFF map's record holds the SHA-256 of the bytes written. check compares it (by
# default); generate compares sizes only, so a rerun with nothing to do reads no map.


SAME_SIZE_REASON = "output changed on disk (same size, other SHA-256: delete it to redo it)"


def impostor(path: Path) -> None:
    """Other pixels in a valid TIFF of the same byte size as the map at ``path``."""
    size = path.stat().st_size
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ones_like(tifffile.imread(path)), compression="zlib")
    data = buffer.getvalue()
    assert len(data) < size
    path.write_bytes(data + bytes(size - len(data)))


def test_digest_is_that_of_the_bytes_written(tmp_path):
    masks, out = generated(tmp_path, kinds=("unet", "edge", "balance"), separate_touching=True)
    data = json.loads((out / MANIFEST_NAME).read_text())
    seen = set()
    for record in data["masks"].values():
        for kind, output in record["outputs"].items():
            seen.add(kind)
            content = (out / output["path"]).read_bytes()
            assert output["sha256"] == hashlib.sha256(content).hexdigest()
            assert output["bytes"] == len(content)
    assert seen == {"unet", "edge", "balance", "target"}
    hasher = hashlib.sha256()
    size = write_tiff_atomic(tmp_path / "w.tif", np.arange(12.0).reshape(3, 4), hasher=hasher)
    content = (tmp_path / "w.tif").read_bytes()
    assert size == len(content) and hasher.hexdigest() == hashlib.sha256(content).hexdigest()


def test_check_hashes_maps(folders):
    masks, out = folders
    path = out / "nuclei_01.unet.tif"
    size = path.stat().st_size
    impostor(path)
    assert path.stat().st_size == size
    report = weightmaps.check(masks, out)
    assert report.stale == [("nuclei_01.tif", "unet", SAME_SIZE_REASON)]
    assert len(report.current) == 3
    result = cli("check", masks, out)
    assert result.exit_code == 1
    assert "stale    nuclei_01.tif [unet]: output changed on disk (same size" in result.stdout
    # Sizes only: the map passes, as it does for generate, which reads no map.
    assert weightmaps.check(masks, out, hash_maps=False).exit_code == 0
    assert cli("check", masks, out, "--no-hash-maps").exit_code == 0
    assert weightmaps.generate(masks, out, kinds=("unet",), workers=1).done == []
    # Deleted, as the reason says: generate redoes it, and check passes.
    path.unlink()
    assert weightmaps.generate(masks, out, kinds=("unet",), workers=1).done == ["nuclei_01.tif"]
    assert weightmaps.check(masks, out).exit_code == 0


def test_manifest_without_digests_still_works(folders):
    """An OUT made before digests were recorded: loads, checks sizes, is not redone."""
    masks, out = folders
    path = out / MANIFEST_NAME
    data = json.loads(path.read_text())
    for record in data["masks"].values():
        for output in record["outputs"].values():
            del output["sha256"]
    path.write_text(json.dumps(data))
    before = outputs_of(out)
    assert weightmaps.check(masks, out).exit_code == 0
    report = weightmaps.generate(masks, out, kinds=("unet",), workers=1)
    assert report.exit_code == 0 and report.done == []
    assert outputs_of(out) == before
    # Not backfilled: a digest of the file now on disk would vouch for whatever is there.
    recorded = json.loads(path.read_text())["masks"]
    assert not any("sha256" in r["outputs"]["unet"] for r in recorded.values())
    shutil.copy(out / "nuclei_00.unet.tif", out / "nuclei_01.unet.tif")
    assert weightmaps.check(masks, out).stale == [
        ("nuclei_01.tif", "unet", "output changed on disk")
    ]


def test_zarr_maps_are_checked_by_size(tmp_path):
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    masks, out = generated(tmp_path, chunked_above=0)
    outputs = json.loads((out / MANIFEST_NAME).read_text())["masks"][NUCLEI_00]["outputs"]
    assert outputs["unet"]["path"].endswith(".zarr") and "sha256" not in outputs["unet"]
    assert weightmaps.check(masks, out).exit_code == 0


def test_a_manifest_larger_than_the_limit_is_refused_unread(tmp_path, monkeypatch):
    from weightmaps.pipeline import manifest as manifest_module

    path = tmp_path / MANIFEST_NAME
    path.write_text('{"format": "weightmaps-manifest/1", "masks": {}}' + " " * 100)
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 64)
    with pytest.raises(ManifestError, match="more than the 64 read"):
        Manifest.load(path)
