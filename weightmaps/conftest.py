"""Doctest collection: skip modules whose optional dependencies are not installed."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("dask") is None:
    collect_ignore.append("chunked.py")
if importlib.util.find_spec("distributed") is None:
    collect_ignore.append("cluster.py")
if importlib.util.find_spec("monai") is None:
    collect_ignore.append("monai.py")
