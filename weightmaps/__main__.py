"""``python -m weightmaps``: the ``weightmaps`` command, for environments without its script.

Only ``python -m weightmaps`` runs this file; ``import weightmaps`` never does, so
the package stays lazy.
"""

from weightmaps.cli.main import main

if __name__ == "__main__":
    main(prog_name="weightmaps")
