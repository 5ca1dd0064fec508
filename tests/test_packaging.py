"""The wheel and the sdist as a package index would get them: built from a copy of
the source tree, without network (no build isolation), and looked into."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a checkout holds beside the sources: never part of a build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "out",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "gallery",
    "site",
)


def _build(kind: str, source: Path, dest: Path) -> Path:
    # setuptools' PEP 517 hooks, as pip or `python -m build --no-isolation` call them.
    code = f"import sys; from setuptools import build_meta as b; print(b.build_{kind}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(dest)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dest / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("packaging")
    # A copy: the build's own files (build/, *.egg-info) stay out of the checkout,
    # and a local symlink (weightmaps/cli in a worktree) is not followed.
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE, symlinks=True)
    cli_link = source / "weightmaps" / "cli"
    if cli_link.is_symlink():
        cli_link.unlink()
    dist = tmp / "dist"
    dist.mkdir()
    return _build("wheel", source, dist), _build("sdist", source, dist)


def _metadata(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def test_wheel_ships_the_license_and_no_conftest(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = _metadata(whl.read(meta_name).decode())
    assert not [n for n in names if n.endswith("conftest.py")], names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "weightmaps/cli/main.py" in names and "weightmaps/napari/napari.yaml" in names
    # PEP 639: an SPDX expression, not the deprecated table (a License: field).
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["License"] is None
    assert meta.get_all("License-File") == ["LICENSE"]
    assert any(u.startswith("Source, https://") for u in meta.get_all("Project-URL"))
    assert any(
        c.startswith("Programming Language :: Python :: 3") for c in meta.get_all("Classifier")
    )
    # zarr 3 needs Python 3.11: every requirement of the dask extra says so.
    dask = [r for r in meta.get_all("Requires-Dist") if 'extra == "dask"' in r]
    assert len(dask) == 3
    assert all('python_version >= "3.11"' in r for r in dask), dask


def test_sdist_holds_what_the_tests_need(built):
    _, sdist = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        top = tar.getnames()[0].split("/", 1)[0]
        meta = _metadata(tar.extractfile(f"{top}/PKG-INFO").read().decode())
    for needed in (
        "LICENSE",
        "conftest.py",
        "tests/conftest.py",
        "tests/test_preview.py",
        "sample_data/masks/nuclei/nuclei_00.tif",
        "sample_data/images/nuclei/nuclei_00.tif",
        "examples/train_unet.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("weightmaps/") and n.endswith("conftest.py")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert meta["License-Expression"] == "BSD-3-Clause"
