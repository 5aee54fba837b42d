"""Write docs/commands.md, the command reference, from the CLI's own command tree.

Run from the repository root (or anywhere: the script puts ``src/`` first on the path)::

    python scripts/gen_cli_docs.py > docs/commands.md

It walks ``typer.main.get_command(app)`` (the click command tree typer builds) and writes,
per command in ``manyfest --help`` order (a group's commands right after it, one heading
level down): the usage line, the help text, the arguments and the options, each with the
help ``--help`` shows (defaults, ranges and ``[required]`` included). Only the public
click API is used (``collect_usage_pieces``, ``get_help_record``, ``list_commands``), so it
works with typer's vendored click and with click itself. Help
texts are copied as written, never re-wrapped: the output does not depend on the terminal's
width, ``COLUMNS`` or the environment, and the same sources always give the same bytes.
``tests/test_docs.py`` regenerates the file and fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROG = "manyfest"
HEADER = f"""\
# Command reference

Generated from the CLI by `python scripts/gen_cli_docs.py > docs/commands.md`; do not edit
by hand (`tests/test_docs.py` fails when this file is stale). Every command also prints
this with `{PROG} COMMAND --help`. Exit codes: [exit-codes.md](exit-codes.md); plan files:
[plan.md](plan.md); the configuration file and environment: [configuration.md](configuration.md).
"""


def _paragraphs(text: str) -> str:
    """A click help text as Markdown: each paragraph's lines joined, paragraphs separated by
    a blank line; a ``\\b`` block (click's "do not rewrap": the Examples) keeps its lines,
    its first line as a paragraph of its own (``Examples:``) and the rest as a code block."""
    paragraphs: list[str] = []
    for block in text.strip().split("\n\n"):
        raw = block.splitlines()
        if raw and raw[0].strip() == "\b":
            kept = [line for line in raw[1:] if line.strip()]
            if not kept:
                continue
            head, body = kept[0].strip(), kept[1:]
            if body:
                indent = min(len(line) - len(line.lstrip()) for line in body)
                code = "\n".join(line[indent:].rstrip() for line in body)
                paragraphs.append(f"{head}\n\n```sh\n{code}\n```")
            else:
                paragraphs.append(head)
            continue
        lines = [line.strip() for line in raw if line.strip() not in ("", "\b")]
        if lines:
            paragraphs.append(" ".join(lines))
    return "\n\n".join(paragraphs)


def _code(text: str) -> str:
    """``text`` as a Markdown code span (longer fences when it holds backticks)."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _usage(command: Any, ctx: Any) -> str:
    return " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])


def _params(command: Any, ctx: Any, kind: str) -> list[str]:
    """One Markdown bullet per visible parameter of ``kind`` (``argument`` or ``option``)."""
    out: list[str] = []
    for param in command.get_params(ctx):
        if param.param_type_name != kind or getattr(param, "hidden", False):
            continue
        get_help_record = getattr(param, "get_help_record", None)
        record = get_help_record(ctx) if get_help_record is not None else None
        if record is None:
            if kind != "argument":
                continue
            record = (param.make_metavar(ctx) if _takes_ctx(param) else param.make_metavar(), "")
        names, help_text = record
        help_text = " ".join(help_text.split())
        out.append(f"* {_code(names)}" + (f": {help_text}" if help_text else ""))
    return out


def _takes_ctx(param: Any) -> bool:
    """click 8.2 (and typer's vendored copy) pass ``ctx`` to ``make_metavar``; 8.1 does not."""
    import inspect

    return "ctx" in inspect.signature(param.make_metavar).parameters


def _section(command: Any, ctx: Any, level: str) -> list[str]:
    lines = [f"{level} {_code(ctx.command_path)}", ""]
    lines += ["```text", f"Usage: {_usage(command, ctx)}", "```", ""]
    help_text = _paragraphs(command.help or "")
    if help_text:
        lines += [help_text, ""]
    arguments = _params(command, ctx, "argument")
    if arguments:
        lines += ["Arguments:", "", *arguments, ""]
    options = _params(command, ctx, "option")
    if options:
        lines += ["Options:", "", *options, ""]
    return lines


def _subcommands(command: Any, ctx: Any) -> list[str]:
    """The visible commands of a group (none for a plain command), in its order."""
    list_commands = getattr(command, "list_commands", None)
    if list_commands is None:
        return []
    return [n for n in list_commands(ctx) if not command.get_command(ctx, n).hidden]


def render() -> str:
    """The whole of docs/commands.md, as text ending in one newline."""
    import importlib

    import typer

    # The root typer app, with every command registered (or loadable) once this is imported.
    app = importlib.import_module("manyfest.cli.main").app
    root: Any = typer.main.get_command(app)  # a group: click's API, whichever click it is
    ctx = root.make_context(PROG, [], resilient_parsing=True)
    lines = [HEADER, *_section(root, ctx, "##")]
    names = [n for n in root.list_commands(ctx) if not root.get_command(ctx, n).hidden]
    lines += ["Commands: " + ", ".join(f"[{n}](#{PROG}-{n})" for n in names) + ".", ""]
    for name in names:
        command = root.get_command(ctx, name)
        sub = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        lines += _section(command, sub, "##")
        for child in _subcommands(command, sub):  # a group's commands (`report merge`)
            inner = command.get_command(sub, child)
            lines += _section(inner, inner.make_context(child, [], parent=sub,
                                                        resilient_parsing=True), "###")
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    """Print docs/commands.md on stdout."""
    sys.path.insert(0, str(ROOT / "src"))
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
