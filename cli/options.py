"""Options shared by the commands, the map parameters built from their declarations.

Every map parameter is declared once (:mod:`weightmaps.settings` and the kinds
of :mod:`weightmaps.kinds`); its option, help and parsing come from there. The
options' defaults are None so that ``check`` can tell a given option from an
absent one: ``generate`` then applies the settings' defaults, ``check`` the
last run's.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from weightmaps.io.header import RGB_RULES
from weightmaps.kinds import KINDS
from weightmaps.kinds.spec import Param
from weightmaps.settings import PARAMS

__all__ = [
    "EXIT_RUN_ERROR",
    "READ_OPTIONS",
    "apply",
    "cli_words",
    "make_log",
    "map_options",
    "parse_kinds",
    "pop_settings",
    "usage_errors",
]

EXIT_RUN_ERROR = 3


def parse_kinds(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--kinds unet,edge`` as a tuple of registered kinds."""
    if value is None:
        return None
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"choose from {', '.join(KINDS)} (comma-separated)")
    return kinds


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _help(param: Param, defaults: str) -> str:
    text = param.help
    if defaults == "manifest":
        # check plans with the last run's value of every parameter not given,
        # not with the settings' defaults that generate's help names.
        text = re.sub(r" \[default:[^\]]*\]", "", text)
        return f"{text} [default: as last generated]."
    if "[default" in text:
        return text + "."
    if defaults == "settings" and param.default not in (None, False):
        return f"{text} [default: {_shown(param.default)}]."
    return text + "."


def _callback(parse: Callable[[str], Any]) -> Callable:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _option(param: Param, defaults: str) -> Callable:
    flag = "--" + param.name.replace("_", "-")
    help_text = _help(param, defaults)
    if param.flag:
        return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=help_text)
    if param.choices is not None:
        return click.option(flag, type=click.Choice(param.choices), help=help_text)
    if param.parse is not None:
        return click.option(flag, callback=_callback(param.parse), help=help_text)
    return click.option(flag, type=param.cli_type, help=help_text)


def map_options(defaults: str) -> list[Callable]:
    """One option per map parameter; ``defaults`` says which defaults the help shows:
    ``"settings"`` (generate) or ``"manifest"`` (check: the last run's)."""
    return [_option(param, defaults) for param in PARAMS.values()]


READ_OPTIONS: list[Callable] = [
    click.option(
        "--glob",
        "glob",
        multiple=True,
        metavar="PATTERN",
        help="Only masks matching this pattern; repeat the option for several "
        "(a mask matching any of them is taken).",
    ),
    click.option("--channel", type=int, help="Channel of a colour mask to read."),
    click.option(
        "--rgb-rule", type=click.Choice(RGB_RULES), help="How a colour mask marks foreground."
    ),
]


# The library's messages advise in Python keywords (mask_type='binary',
# channel=); the commands show their options (--mask-type binary, --channel).
_KEYWORDS = frozenset(PARAMS) | {"channel", "rgb_rule", "glob", "max_pixels"}
# A value is quoted, or plain: words and numbers joined by ":" or ","
# (zlib:1, 2,0.5,0.5, 1e-5). Neither a keyword nor a plain value may touch
# more of a path (a file named sigma=3.tif, a folder w0=5/ stay as they are).
_PLAIN = r"-?\w+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:[:,]-?\w+(?:\.\d+)?(?:[eE][-+]?\d+)?)*"
_KEYWORD = re.compile(
    rf"(?<![\w./\\-])([a-z][a-z0-9_]*)="
    rf"(?:'([^']*)'|({_PLAIN})(?![\w/\\-]|\.[\w/\\])|(?=[\s,;)]|$))"
)


def cli_words(text: str) -> str:
    """A library message in the words of the command line: ``mask_type='binary'``
    becomes ``--mask-type binary``, ``pass channel= or rgb_rule=`` becomes
    ``pass --channel or --rgb-rule``.

    Examples
    --------
    >>> cli_words("name mask_type='instance' or mask_type='semantic'")
    'name --mask-type instance or --mask-type semantic'
    >>> cli_words("pass channel= or rgb_rule= to read it; channel=4 but")
    'pass --channel or --rgb-rule to read it; --channel 4 but'
    >>> cli_words("cannot read sigma=3.tif: truncated")
    'cannot read sigma=3.tif: truncated'
    """

    def option(match: re.Match[str]) -> str:
        name, quoted, bare = match.groups()
        if name not in _KEYWORDS:
            return match.group(0)
        flag = "--" + name.replace("_", "-")
        value = quoted if quoted is not None else bare
        return flag if value in (None, "True") else f"{flag} {value}"

    return _KEYWORD.sub(option, text)


def apply(options: list[Callable]) -> Callable:
    """Decorate a command with ``options``, in their order on ``--help``."""

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def pop_settings(params: dict[str, Any]) -> dict[str, Any]:
    """Take the map parameters that were given out of a command's keywords."""
    given = {k: params[k] for k in PARAMS if params.get(k) is not None}
    for k in PARAMS:
        params.pop(k, None)
    return given


def _echo_err(message: str) -> None:
    from tqdm import tqdm

    # tqdm.write keeps an active progress bar intact.
    tqdm.write(message, file=sys.stderr)


def make_log(verbose: int, quiet: bool) -> Callable[[int, str], None]:
    """``log(level, message)`` to stderr from the threshold of ``-q`` / ``-v``."""
    threshold = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )

    def log(level: int, message: str) -> None:
        if level >= threshold:
            _echo_err(cli_words(message))

    return log


def usage_errors(function: Callable) -> Callable:
    """Invalid options become click usage errors (exit 2), run errors exit 3."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from weightmaps.pipeline.manifest import ManifestError
        from weightmaps.pipeline.reports import PipelineError

        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ManifestError):
                click.echo(f"error: {cli_words(str(exc))}", err=True)
                sys.exit(EXIT_RUN_ERROR)
            raise click.UsageError(cli_words(str(exc))) from None
        except PipelineError as exc:
            click.echo(f"error: {cli_words(str(exc))}", err=True)
            sys.exit(EXIT_RUN_ERROR)

    return wrapper
