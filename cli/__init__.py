"""The ``weightmaps`` command line: a thin click shell over the Python API."""
