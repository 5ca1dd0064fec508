"""Entry point of the ``weightmaps`` command."""

from __future__ import annotations

import click

from weightmaps._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="weightmaps")
def main() -> None:
    """Precompute per-pixel loss weight maps for segmentation training.

    U-Net border maps, F3Net/PraNet edge maps and class-balance maps are
    computed once from label masks and written beside them; the losses and
    Dataset in the ``weightmaps`` package read them during training.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
