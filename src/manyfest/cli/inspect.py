"""``manyfest inspect``: docker's ``manifest inspect``, plus ``--raw``, ``--platform`` and
``--format``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from manyfest import interrupts
from manyfest.cli.app import (
    InsecureOpt,
    Stopped,
    command_app,
    execute,
    fail,
    interrupted_exit,
    parse_ref,
    settings_from,
    sink,
)
from manyfest.cli.completion import complete_list
from manyfest.errors import ManyfestError, UsageError

# manyfest.ops.inspect.FIELDS, written out so that --help does not load the inspect module
# (the store, msgspec); tests/test_startup.py checks the two agree.
TEMPLATE_FIELDS = (
    "Ref", "Digest", "Size", "MediaType", "Platform", "Attestation", "AttestationFor",
    "Annotations",
)


app = command_app()
"""This module's commands (loaded by :mod:`manyfest.cli.main` when one runs)."""


@app.command()
def inspect(
    refs: Annotated[list[str], typer.Argument(
        metavar="[MANIFEST_LIST] MANIFEST", autocompletion=complete_list,
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    )],
    insecure: InsecureOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Output additional info including layers and platform"
        ),
    ] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Print the exact bytes the registry served, nothing added (for a local "
            "list: the bytes `push` would write; with --platform: the chosen child's)",
        ),
    ] = False,
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform",
            metavar="OS/ARCH[/VARIANT]",
            help="Show the child of a list for this platform, chosen as docker's --platform "
            "does (attestations never match); on an image, fail unless it is this platform",
        ),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="json|table|TEMPLATE",
            help="json (docker's output), table (platform, digest, size, media type, "
            "attestation, annotations; one row per entry) or a template printed once per "
            "entry, with fields " + ", ".join("{{." + f + "}}" for f in TEMPLATE_FIELDS)
            + " and {{json .Field}}",
        ),
    ] = "json",
) -> None:
    """Display an image manifest, or manifest list.

    \b
    Examples:
      manyfest inspect registry.example/app:1.0
      manyfest inspect --platform linux/arm64 --raw registry.example/app:1.0
      manyfest inspect --format table registry.example/app:1.0
    """
    from manyfest.api import Session
    from manyfest.ops import inspect as inspecting
    from manyfest.platform import parse as parse_platform

    if len(refs) > 2:
        raise fail(UsageError(
            '"inspect" requires at least 1 and at most 2 arguments (usage: manyfest inspect '
            "[OPTIONS] [MANIFEST_LIST] MANIFEST)", hint="see `manyfest inspect --help`",
        ))
    try:
        fmt = inspecting.parse_format(format_)
        wanted = None if platform is None else parse_platform(platform)
        inspecting.check_options(verbose=verbose, raw=raw, format=fmt)
    except ManyfestError as exc:
        raise fail(exc) from None
    parsed = [parse_ref(r) for r in refs]
    list_ref, ref = (parsed[0], parsed[1]) if len(parsed) == 2 else (None, parsed[0])

    async def body() -> str | bytes:
        async with Session(settings_from(insecure), on_event=sink()) as session:
            if raw:
                return await session.inspect(ref, list_ref=list_ref, raw=True, platform=wanted)
            return await session.inspect(
                ref, list_ref=list_ref, verbose=verbose, platform=wanted, format=fmt
            )

    try:
        shown = execute(body)
    except Stopped:
        raise interrupted_exit(f"inspect of {ref} stopped (it only reads: nothing was changed)")\
            from None
    if interrupts.received() is not None:
        raise interrupted_exit(f"inspect of {ref} stopped before printing (nothing was changed)")
    if isinstance(shown, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(shown)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(shown)
