"""Doctest collection of weightmaps/: skip modules whose optional dependencies are not
installed. Here rather than in weightmaps/, so that the wheel ships no conftest.py."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("dask") is None:
    collect_ignore.append("weightmaps/chunked.py")
if importlib.util.find_spec("distributed") is None:
    collect_ignore.append("weightmaps/cluster.py")
if importlib.util.find_spec("monai") is None:
    collect_ignore.append("weightmaps/monai.py")
