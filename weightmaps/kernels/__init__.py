"""The kernels: arrays in, arrays out, no files.

One module per map and its backends side by side: ``unet.py`` (numpy, with
its compiled loops in ``nearest.py`` / ``_nearest_nb.py``), ``unet_torch.py``
(any torch device, batches) and ``unet_dask.py`` (chunked volumes), and
likewise ``edge``, ``balance``, ``instances``, ``sdf``, ``skeleton``. The
numpy function of a map hands a torch tensor to its torch twin. The public
namespaces are :mod:`weightmaps` (numpy), :mod:`weightmaps.torch_kernels`
and :mod:`weightmaps.chunked`.

Importing this package imports nothing: each module loads what it needs.
"""
