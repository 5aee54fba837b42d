"""Usage errors in the user's words: click's messages (a bad number or choice, a missing
argument, an unknown flag or command) rewritten as one line naming the flag or argument,
what was expected and what was given.

Examples::

    --concurrency 0: expected a whole number of at least 1
    --media-type 'x': expected one of oci, docker, auto
    missing MANIFEST (usage: manyfest annotate [OPTIONS] MANIFEST_LIST MANIFEST)
    unknown flag '--nope' (did you mean '--purge'?)
    unknown command 'pussh' (did you mean 'push'?)

:func:`manyfest.cli.main.run` adds ``; see `manyfest CMD --help``` and exits 2.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

import click

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")


def usage_line(
    exc: click.UsageError,
    args: Sequence[str],
    commands: Sequence[str],
    command: click.Context | None = None,
) -> str:
    """One line (no trailing period) for click's usage error ``exc``.

    ``args`` are the command line's arguments (``sys.argv[1:]``), read for the value a bad
    option was given as typed; ``commands`` are the root's command names, for an unknown
    command's nearest one; ``command``: a context of the command the error is about, for
    the errors click raises without one (a flag missing its value).
    """
    ctx = exc.ctx or command
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        return _missing(exc.param, ctx)
    if isinstance(exc, click.BadParameter) and exc.param is not None:
        line = _bad_value(exc, exc.param, args)
        if line:
            return line
    if isinstance(exc, click.NoSuchOption):
        return f"unknown flag {exc.option_name!r}{_did_you_mean(exc.possibilities or [])}"
    if isinstance(exc, click.BadOptionUsage):
        return _bad_option_usage(exc, ctx)
    text = " ".join(exc.format_message().split())
    unknown = re.match(r"No such command '(.*)'\.", text)
    if unknown:
        name = unknown.group(1)
        near = difflib.get_close_matches(name, list(commands), n=1)
        return f"unknown command {name!r}{_did_you_mean(near)}"
    extra = re.match(r"Got unexpected extra arguments? \((.*)\)\Z", text)
    if extra:
        given = extra.group(1).split()
        listed = ", ".join(repr(a) for a in given)
        line = f"unexpected extra argument{'' if len(given) == 1 else 's'} {listed}"
        return line + (f" (usage: {_usage(ctx)})" if ctx is not None else "")
    return _one_sentence(text)


def _bad_value(exc: click.BadParameter, param: click.Parameter, args: Sequence[str]) -> str:
    """``--flag VALUE: expected ...`` for a value the flag's type refused ('' when the type
    is not one we describe)."""
    expected = _expected(param.type)
    if not expected:
        return ""
    name = _name(param)
    given = _given(param, args)
    if given is None:
        match = re.match(r"('(?:[^']|\\')*'|\S+) is not", exc.message)
        given = match.group(1).strip("'") if match else None
    line = f"{name}: expected {expected}"
    if given is not None:
        shown = given if _NUMBER.match(given) and not isinstance(param.type, click.Choice) \
            else repr(given)
        line = f"{name} {shown}: expected {expected}"
        if isinstance(param.type, click.Choice):
            choices = [str(c) for c in param.type.choices]
            line += _did_you_mean(difflib.get_close_matches(given, choices, n=1))
    return line


def _expected(kind: click.ParamType[Any]) -> str:
    """What a value of the click type ``kind`` must be, in words ('' when not described)."""
    described = getattr(kind, "expected", None)  # manyfest.cli.app.AtLeast
    if isinstance(described, str):
        return described
    if isinstance(kind, click.Choice):
        return "one of " + ", ".join(str(c) for c in kind.choices)
    if isinstance(kind, click.IntRange | click.FloatRange):
        what = "a whole number" if isinstance(kind, click.IntRange) else "a number"
        low, high = kind.min, kind.max
        if low is not None and high is not None:
            return f"{what} from {low} to {high}"
        if low is not None:
            return f"{what} {'above' if kind.min_open else 'of at least'} {low}"
        if high is not None:
            return f"{what} {'below' if kind.max_open else 'of at most'} {high}"
        return what
    if isinstance(kind, click.types.IntParamType):
        return "a whole number"
    if isinstance(kind, click.types.FloatParamType):
        return "a number"
    return ""


def _name(param: click.Parameter) -> str:
    """How the user names ``param``: its long flag, else its first flag, else its metavar."""
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs or param.opts)[0]
    metavar = param.metavar or (param.name or "").upper()
    words = [w for w in metavar.split() if not w.startswith("[")]
    return words[0] if words else metavar


def _given(param: click.Parameter, args: Sequence[str]) -> str | None:
    """The value typed after ``param``'s flag (the last one given), or None."""
    if not isinstance(param, click.Option):
        return None
    found: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for opt in param.opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif opt.startswith("--") and arg.startswith(opt + "="):
                found = arg[len(opt) + 1:]
            elif not opt.startswith("--") and arg.startswith(opt) and len(arg) > len(opt):
                found = arg[len(opt):]
    return found


def _missing(param: click.Parameter, ctx: click.Context | None) -> str:
    """``missing MANIFEST (usage: ...)`` for a missing argument (or a required flag)."""
    if isinstance(param, click.Option):
        return f"missing {_name(param)}"
    line = f"missing {_name(param)}"
    return line + (f" (usage: {_usage(ctx)})" if ctx is not None else "")


def _bad_option_usage(exc: click.BadOptionUsage, ctx: click.Context | None) -> str:
    """A flag given without its value, or a value given to a flag that takes none."""
    name = exc.option_name
    text = exc.format_message()
    if "does not take a value" in text:
        return f"{name} takes no value"
    if "requires" in text:
        param = _option(name, ctx)
        if param is None or ctx is None:
            return f"{name} needs a value"
        return f"{_name(param)} needs a value ({param.make_metavar(ctx)})"
    return _one_sentence(text)


def _option(flag: str, ctx: click.Context | None) -> click.Option | None:
    """The option of the failing command that ``flag`` names (None when unknown)."""
    for param in ctx.command.params if ctx is not None else []:
        if isinstance(param, click.Option) and flag in param.opts:
            return param
    return None


def _usage(ctx: click.Context) -> str:
    """The command's usage line, as ``--help`` starts: ``manyfest rm [OPTIONS] ...``."""
    pieces = ctx.command.collect_usage_pieces(ctx)
    return " ".join([ctx.command_path, *pieces])


def _did_you_mean(near: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` / `` (did you mean 'x' or 'y'?)``, or '' when nothing is near."""
    if not near:
        return ""
    return " (did you mean " + " or ".join(repr(n) for n in near) + "?)"


def _one_sentence(text: str) -> str:
    """Any other click message as one clause: ``A. Did you mean 'b'?`` becomes
    ``A (did you mean 'b'?)``."""
    message = " ".join(text.split())
    head, sep, suggestion = message.partition(". Did you mean ")
    if sep:
        return f"{head} (did you mean {suggestion.rstrip('.')})"
    return message.rstrip(".")
