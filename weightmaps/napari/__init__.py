"""The napari plugin: a reader for the maps and a widget that computes them on the spot.

Declared by the npe2 manifest ``napari.yaml`` beside this file (entry point
``napari.manifest`` in ``pyproject.toml``). The reader
(:func:`weightmaps.napari.reader.get_reader`) opens ``*.unet.tif``,
``*.edge.tif``, ``*.balance.tif``, ``*.target.tif`` ... and their ``.zarr``
forms with the recorded spacing as ``scale``, a colormap and contrast per
kind, and the carved target as a labels layer. The widget
(:func:`weightmaps.napari.widget.compute_maps`) computes the maps of a
Labels layer with the kernels, for a look before generating a dataset.

Neither module imports napari, magicgui or Qt: napari builds the widget from
the function's signature (``autogenerate``), so both are importable and
testable headless. Install napari with ``pip install 'weightmaps[napari]'``.
"""
