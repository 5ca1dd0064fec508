"""The command line shell: --version and --help for now."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner
from weightmaps.cli.main import main

import weightmaps


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert weightmaps.__version__ in result.output


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "weight maps" in result.output


def test_console_script_installed():
    # The entry point lives in the installed package as weightmaps.cli,
    # never as a top-level "cli" package.
    out = subprocess.run(
        [sys.executable, "-m", "weightmaps.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert weightmaps.__version__ in out.stdout
