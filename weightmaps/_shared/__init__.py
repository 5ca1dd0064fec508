"""Leaf helpers every layer may use: argument checks, array-type tests, text.

Nothing here imports another weightmaps module, numba, torch or dask.
"""
