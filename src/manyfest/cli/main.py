"""``manyfest`` commands: docker manifest's (inspect, create, annotate, push, rm) + publish.

Arguments, flags and output lines are docker's (``docker manifest --help``). Every failure
is one line on stderr saying what failed and what to do. Exit codes: 0 success, 1 failure,
2 usage error, 3 publish finished with some lists failed, 130 interrupted by SIGINT, 143 by
SIGTERM.

Interrupts (:mod:`manyfest.interrupts`): once a command runs, a signal is recorded and passed
to the running command, which stops (``publish`` stops starting lists and cancels those in
flight; the others are cancelled), writes what it must (``publish``: ``--json`` and
``--report``), prints one line saying what was done and what was not, and exits 130 / 143.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
import typer
from rich.console import Console

from manyfest import config, interrupts, reference
from manyfest._version import __version__
from manyfest.api import Session
from manyfest.engine import PublishOptions, first_error
from manyfest.errors import Interrupted, ManyfestError, PublishFailed, UsageError
from manyfest.events import Event, Warned
from manyfest.ops import inspect as inspecting
from manyfest.ops import manifests
from manyfest.ops import plan as plans
from manyfest.ops.publish import PublishReport, StopRequest
from manyfest.ops.remote_annotate import EntryChange, RemoteAnnotation
from manyfest.platform import parse as parse_platform
from manyfest.transport import Settings
from manyfest.transport.settings import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from manyfest.store import ListSettings

T = TypeVar("T")


class MediaTypeChoice(enum.StrEnum):
    """``--media-type`` values: the list's media type (auto: docker's first-entry rule)."""

    oci = "oci"
    docker = "docker"
    auto = "auto"


class PlatformCheckChoice(enum.StrEnum):
    """``--platform-check`` values."""

    error = "error"
    warn = "warn"
    off = "off"


PlatformCheckOpt = Annotated[
    PlatformCheckChoice | None,
    typer.Option(
        "--platform-check",
        help="Platforms outside the table of valid os/arch/variant: refuse (error), warn and "
        "go on (warn), or do not check (off). Default: refuse platforms you write, warn about "
        "platforms read from images.",
        show_default=False,
    ),
]


class AttestationsChoice(enum.StrEnum):
    """``--attestations`` values: keep or drop index sources' attestation entries."""

    keep = "keep"
    drop = "drop"


AllowDuplicatesOpt = Annotated[
    bool,
    typer.Option(
        "--allow-duplicate-platforms",
        help="Allow two images with the same platform in one list (refused by default).",
    ),
]


def _mode(choice: PlatformCheckChoice | None) -> str:
    """The ``platform_check`` value of a ``--platform-check`` choice ('' when not given)."""
    return choice.value if choice is not None else ""


class JsonStyleChoice(enum.StrEnum):
    """``--json-style`` values."""

    docker = "docker"
    manifest_tool = "manifest-tool"
    compact = "compact"

app = typer.Typer(
    name="manyfest",
    help="Publish multi-architecture manifest lists / OCI indexes, fast; a drop-in for "
    "`docker manifest`.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Allow communication with an insecure registry (no TLS verification; plain HTTP "
        "when the TLS handshake fails).",
    ),
]


MediaTypeOpt = Annotated[
    MediaTypeChoice | None,
    typer.Option(
        "--media-type",
        help="The list's media type: oci (an OCI index), docker (a Docker manifest list) or "
        "auto (docker's rule: an OCI index when the first entry is an OCI image; the default).",
    ),
]
AnnotationOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--annotation", metavar="KEY=VALUE",
        help="Index annotation (repeatable; OCI index only).",
    ),
]
ArtifactTypeOpt = Annotated[
    str,
    typer.Option(
        "--artifact-type", metavar="MEDIA_TYPE",
        help="The index's artifactType (OCI index only).",
    ),
]
SubjectOpt = Annotated[
    str,
    typer.Option(
        "--subject", metavar="REF",
        help="The index's subject: a manifest in the list's repository (reference, @DIGEST "
        "or :TAG), written as its descriptor (OCI index only).",
    ),
]
LabelsOpt = Annotated[
    bool,
    typer.Option(
        "--labels-to-annotations",
        help="Copy the org.opencontainers.image.* labels all images' configs agree on into "
        "the index annotations (given annotations win; attestations not counted).",
    ),
]


def _list_settings(
    where: str,
    media_type: MediaTypeChoice | None,
    annotations: list[str] | None,
    artifact_type: str,
    subject: str,
    labels: bool,
) -> ListSettings:
    """The list settings of create/push's flags, checked (exit 2 on a bad one)."""
    from manyfest.store import ListSettings

    parsed: dict[str, str] = {}
    try:
        for item in annotations or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(
                    f"--annotation {item!r} is not KEY=VALUE",
                    hint="give each annotation as --annotation key=value",
                )
            parsed[key] = value
        mt = media_type.value if media_type else ""
        plans.check_list_settings(mt, parsed, artifact_type, subject, labels, where=where)
    except ManyfestError as exc:
        raise _fail(exc) from None
    return ListSettings(media_type=mt, annotations=parsed, artifact_type=artifact_type,
                        subject=subject, labels_to_annotations=labels)


def _version(value: bool) -> None:
    if value:
        print(f"manyfest {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", "-D", help="Show debug logs and tracebacks.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """manyfest: docker manifest's commands, and a bulk `publish`."""
    _state["debug"] = debug
    # From here on the command reports a signal itself (see manyfest.interrupts).
    interrupts.command_started(
        again="stopped at once (a report not yet written is not written); re-run to finish"
    )
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


def _fail(exc: ManyfestError) -> typer.Exit:
    stderr.print(exc.one_line(), markup=False)
    return typer.Exit(exc.exit_code)


class _Stopped(Exception):
    """The command body was cancelled by a signal (see :func:`_execute`)."""


def _interrupted(text: str) -> typer.Exit:
    """Print ``interrupted by <SIG>: <text>`` on stderr; the exit for the signal (130/143)."""
    signum = interrupts.received()
    code = interrupts.exit_code(signum) if signum is not None else Interrupted.exit_code
    what = interrupts.name(signum) if signum is not None else "SIGINT"
    stderr.print(f"interrupted by {what}: {' '.join(text.split())}", markup=False)
    interrupts.mark_reported()
    return typer.Exit(code)


def _execute(
    fn: Callable[[], Awaitable[T]], *, on_signal: Callable[[int], None] | None = None
) -> T:
    """Run an async command body; map errors to one stderr line and an exit code.

    A SIGINT/SIGTERM during the run (or before it, once the command started) is passed to
    ``on_signal`` in the event loop (``publish`` stops gracefully and returns); without
    ``on_signal`` the body is cancelled and :class:`_Stopped` is raised.

    Raises:
        _Stopped: the body was cancelled by a signal.
        typer.Exit: the body failed (one line printed).
    """
    cancelled = False

    async def guarded() -> T:
        nonlocal cancelled
        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as scope:

            def stop(signum: int) -> None:
                if on_signal is not None:
                    on_signal(signum)
                else:
                    scope.cancel()

            def from_handler(signum: int) -> None:
                loop.call_soon_threadsafe(stop, signum)

            previous = interrupts.set_stopper(from_handler)
            try:
                early = interrupts.received()
                if early is not None:
                    stop(early)
                return await fn()
            finally:
                interrupts.set_stopper(previous)
        cancelled = True
        raise _Stopped

    try:
        return anyio.run(guarded)
    except _Stopped:
        raise
    except ManyfestError as exc:
        if cancelled or interrupts.received() is not None:
            raise _Stopped from None
        if _state["debug"]:
            raise
        raise _fail(exc) from None
    except BaseExceptionGroup as group:
        leaf = first_error(group)
        if interrupts.received() is not None:
            raise _Stopped from None
        if isinstance(leaf, ManyfestError) and not _state["debug"]:
            raise _fail(leaf) from None
        if isinstance(leaf, KeyboardInterrupt):
            raise _fail(Interrupted("interrupted")) from None
        raise
    except KeyboardInterrupt:
        raise _fail(Interrupted("interrupted")) from None


def _warn(event: Event) -> None:
    """The event sink of the docker-style commands: a :class:`Warned` event is one
    ``warning: ...`` line on stderr; other events are not shown."""
    if isinstance(event, Warned):
        stderr.print(f"warning: {event.message}", markup=False, highlight=False)


def _parse(text: str) -> reference.Reference:
    try:
        return reference.parse(text)
    except ManyfestError as exc:
        raise _fail(exc) from None


def _settings(
    insecure: bool, concurrency: int | None = None, retry_deadline: float | None = None
) -> Settings:
    """Settings from the configuration file with the command line's flags on top."""
    try:
        return config.settings(config.load(), insecure=insecure, concurrency=concurrency,
                               retry_deadline=retry_deadline)
    except ManyfestError as exc:
        raise _fail(exc) from None


@app.command()
def inspect(
    refs: Annotated[list[str], typer.Argument(metavar="[MANIFEST_LIST] MANIFEST")],
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
            "entry, with fields " + ", ".join("{{." + f + "}}" for f in inspecting.FIELDS)
            + " and {{json .Field}}",
        ),
    ] = "json",
) -> None:
    """Display an image manifest, or manifest list."""
    if len(refs) > 2:
        raise _fail(UsageError('"inspect" requires at least 1 and at most 2 arguments'))
    try:
        fmt = inspecting.parse_format(format_)
        wanted = None if platform is None else parse_platform(platform)
        inspecting.check_options(verbose=verbose, raw=raw, format=fmt)
    except ManyfestError as exc:
        raise _fail(exc) from None
    parsed = [_parse(r) for r in refs]
    list_ref, ref = (parsed[0], parsed[1]) if len(parsed) == 2 else (None, parsed[0])

    async def body() -> str | bytes:
        async with Session(_settings(insecure), on_event=_warn) as session:
            if raw:
                return await session.inspect(ref, list_ref=list_ref, raw=True, platform=wanted)
            return await session.inspect(
                ref, list_ref=list_ref, verbose=verbose, platform=wanted, format=fmt
            )

    try:
        shown = _execute(body)
    except _Stopped:
        raise _interrupted(f"inspect of {ref} stopped (it only reads: nothing was changed)")\
            from None
    if interrupts.received() is not None:
        raise _interrupted(f"inspect of {ref} stopped before printing (nothing was changed)")
    if isinstance(shown, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(shown)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(shown)


@app.command()
def create(
    refs: Annotated[list[str], typer.Argument(metavar="MANIFEST_LIST MANIFEST [MANIFEST...]")],
    amend: Annotated[
        bool, typer.Option("--amend", "-a", help="Amend an existing manifest list")
    ] = False,
    insecure: InsecureOpt = False,
    platform_check: PlatformCheckOpt = None,
    attestations: Annotated[
        AttestationsChoice,
        typer.Option("--attestations", help="Keep or drop the attestation manifests of index "
                     "sources (kept only with the image they describe)."),
    ] = AttestationsChoice.keep,
    allow_duplicate_platforms: AllowDuplicatesOpt = False,
    media_type: MediaTypeOpt = None,
    annotation: AnnotationOpt = None,
    artifact_type: ArtifactTypeOpt = "",
    subject: SubjectOpt = "",
    labels_to_annotations: LabelsOpt = False,
) -> None:
    """Create a local manifest list for annotating and pushing to a registry.

    A MANIFEST may be an index / manifest list (e.g. buildx's image + attestation): its
    entries are added as they are, images first, then attestations.
    """
    if len(refs) < 2:
        raise _fail(UsageError('"create" requires at least 2 arguments'))
    parsed = [_parse(r) for r in refs]
    wanted = _list_settings(str(parsed[0]), media_type, annotation, artifact_type, subject,
                            labels_to_annotations)

    async def body() -> None:
        async with Session(_settings(insecure), on_event=_warn) as session:
            await session.create(
                parsed[0], parsed[1:], amend=amend, platform_check=_mode(platform_check),
                attestations=attestations.value,
                allow_duplicate_platforms=allow_duplicate_platforms, settings=wanted,
            )

    try:
        _execute(body)
    except _Stopped:
        # The store is written in one step after every image resolved, between two awaits:
        # a cancelled body never wrote anything.
        raise _interrupted(
            f"nothing was written to the local store; re-run to create {parsed[0]}"
        ) from None
    print(f"Created manifest list {parsed[0]}")
    if interrupts.received() is not None:
        raise _interrupted(f"the local list {parsed[0]} had already been created")


def _split_features(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _annotation_flags(values: list[str], removed: list[str]) -> dict[str, str]:
    """``--annotation KEY=VALUE`` values as a dict (``KEY=`` sets ''), checked against the
    ``--remove-annotation`` keys."""
    out: dict[str, str] = {}
    for value in values:
        key, eq, text = value.partition("=")
        if not eq or not key:
            raise _fail(UsageError(
                f"--annotation {value!r}: expected KEY=VALUE",
                hint="write --annotation KEY=VALUE (KEY= sets an empty value; "
                "--remove-annotation KEY removes one)",
            ))
        out[key] = text
    for key in removed:
        if not key or "=" in key:
            raise _fail(UsageError(f"--remove-annotation {key!r}: expected a KEY",
                                   hint="write --remove-annotation KEY (no value)"))
        if key in out:
            raise _fail(UsageError(f"annotation {key!r} is both set and removed",
                                   hint="give --annotation or --remove-annotation for a key"))
    return out


@app.command()
def annotate(
    list_ref: Annotated[str, typer.Argument(metavar="MANIFEST_LIST")],
    image_ref: Annotated[str, typer.Argument(metavar="MANIFEST")],
    arch: Annotated[str, typer.Option("--arch", help="Set architecture")] = "",
    os_: Annotated[str, typer.Option("--os", help="Set operating system")] = "",
    os_version: Annotated[
        str, typer.Option("--os-version", help="Set operating system version")
    ] = "",
    os_features: Annotated[
        list[str] | None, typer.Option("--os-features", help="Set operating system feature")
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            help="Set architecture variant ('' clears it; a new --arch clears the old one)",
        ),
    ] = None,
    annotation: Annotated[
        list[str] | None,
        typer.Option(
            "--annotation",
            metavar="KEY=VALUE",
            help="Set a descriptor annotation of the entry (repeatable; KEY= sets an empty "
            "value).",
        ),
    ] = None,
    remove_annotation: Annotated[
        list[str] | None,
        typer.Option(
            "--remove-annotation",
            metavar="KEY",
            help="Remove a descriptor annotation of the entry (repeatable).",
        ),
    ] = None,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="MANIFEST_LIST is a list in a registry: rewrite that index with only this "
            "change and push it to its tag (children untouched). MANIFEST: the entry's "
            "digest, os/arch[/variant], or a reference whose digest is an entry.",
        ),
    ] = False,
    insecure: InsecureOpt = False,
    platform_check: PlatformCheckOpt = None,
    allow_duplicate_platforms: AllowDuplicatesOpt = False,
) -> None:
    """Add additional information to a local image manifest (or, with --remote, to an
    entry of a list in a registry)."""
    removed = list(remove_annotation or [])
    annotations = _annotation_flags(list(annotation or []), removed)
    features = _split_features(os_features or [])
    lref = _parse(list_ref)
    if remote:
        change = EntryChange(os_, arch, variant, os_version, tuple(features),
                             tuple(annotations.items()), tuple(removed))
        if not (change.touches_platform or annotations or removed):
            raise _fail(UsageError(
                "annotate --remote: nothing to change",
                hint="give --annotation, --remove-annotation or a platform flag (--os, "
                "--arch, --variant, --os-version, --os-features)",
            ))
        _annotate_remote(lref, image_ref, change, insecure, _mode(platform_check),
                         allow_duplicate_platforms)
        return
    iref = _parse(image_ref)
    from manyfest.store import ManifestStore

    try:
        manifests.annotate(
            ManifestStore(),
            lref,
            iref,
            os=os_,
            arch=arch,
            os_version=os_version,
            os_features=features,
            variant=variant,
            annotations=annotations,
            remove_annotations=removed,
            platform_check=_mode(platform_check),
            warn=lambda message: _warn(Warned(target=str(lref), message=message)),
            allow_duplicate_platforms=allow_duplicate_platforms,
        )
    except ManyfestError as exc:
        if interrupts.received() is not None:
            raise _interrupted(f"annotate failed: {exc.one_line()}") from None
        raise _fail(exc) from None
    if interrupts.received() is not None:
        raise _interrupted(f"{iref} in {lref} had already been annotated")


def _annotate_remote(
    list_ref: reference.Reference, entry: str, change: EntryChange, insecure: bool,
    platform_check: str, allow_duplicate_platforms: bool,
) -> None:
    """``annotate --remote``: the new digest on stdout (unchanged: a note on stderr too)."""
    sessions: list[Session] = []

    async def body() -> RemoteAnnotation:
        async with Session(_settings(insecure), on_event=_warn) as session:
            sessions.append(session)
            return await session.annotate_remote(
                list_ref, entry, change, platform_check=platform_check,
                allow_duplicate_platforms=allow_duplicate_platforms,
                warn=lambda message: _warn(Warned(target=str(list_ref), message=message)),
            )

    try:
        outcome = _execute(body)
    except _Stopped:
        client = sessions[0].client if sessions else None
        key = str(list_ref)
        if client is not None and key in client.tags_written:
            text = f"the index PUT had landed: {list_ref} points at the annotated index"
        elif client is not None and key in client.tags_in_flight:
            text = (f"the index PUT to {list_ref} was in flight: the tag may point at the "
                    "annotated index or still where it was; re-run annotate to settle it")
        else:
            text = f"{list_ref} was left where it was (nothing was written); re-run to annotate"
        raise _interrupted(text) from None
    if not outcome.changed:
        stderr.print(f"{list_ref}: entry {outcome.entry} already has these values; nothing "
                     "was written", markup=False)
    print(outcome.digest)
    if interrupts.received() is not None:
        raise _interrupted(f"{list_ref} had already been annotated: it points at "
                           f"{outcome.digest}")


@app.command()
def push(
    list_ref: Annotated[str, typer.Argument(metavar="MANIFEST_LIST")],
    purge: Annotated[
        bool, typer.Option("--purge", "-p", help="Remove the local manifest list after push")
    ] = False,
    insecure: InsecureOpt = False,
    media_type: MediaTypeOpt = None,
    annotation: AnnotationOpt = None,
    artifact_type: ArtifactTypeOpt = "",
    subject: SubjectOpt = "",
    labels_to_annotations: LabelsOpt = False,
) -> None:
    """Push a manifest list to a repository.

    --media-type, --annotation, --artifact-type, --subject and --labels-to-annotations
    override what `create` stored for the list.
    """
    ref = _parse(list_ref)
    wanted = _list_settings(str(ref), media_type, annotation, artifact_type, subject,
                            labels_to_annotations)

    sessions: list[Session] = []

    async def body() -> manifests.PushOutcome:
        async with Session(_settings(insecure), on_event=_warn) as session:
            sessions.append(session)
            return await session.push(ref, purge=purge, settings=wanted)

    try:
        outcome = _execute(body)
    except _Stopped:
        raise _interrupted(_push_stopped(ref, sessions)) from None
    for line in outcome.lines():
        print(line)
    if interrupts.received() is not None:
        raise _interrupted(f"{ref} had already been pushed: it points at {outcome.digest}")


def _push_stopped(ref: reference.Reference, sessions: list[Session]) -> str:
    """What a cancelled push did to its tag (the list PUT is the last write)."""
    client = sessions[0].client if sessions else None
    key = str(ref)
    if client is not None and key in client.tags_written:
        return f"the list PUT had landed: {ref} points at the new list; the local list is kept"
    if client is not None and key in client.tags_in_flight:
        return (
            f"the list PUT to {ref} was in flight: the tag may point at the new list (complete: "
            "its children were pushed first) or still where it was; re-run push to settle it"
        )
    return f"{ref} was left where it was (the list was not PUT); re-run to push"


@app.command()
def rm(
    list_refs: Annotated[list[str], typer.Argument(metavar="MANIFEST_LIST [MANIFEST_LIST...]")],
) -> None:
    """Delete one or more manifest lists from local storage."""
    from manyfest.store import ManifestStore

    refs = [_parse(r) for r in list_refs]
    errors = manifests.remove(ManifestStore(), refs)
    for exc in errors:
        stderr.print(exc.one_line(), markup=False)
    if interrupts.received() is not None:
        raise _interrupted(f"rm had already run: {len(refs) - len(errors)} of {len(refs)} "
                           "local lists removed")
    if errors:
        raise typer.Exit(1)


@app.command()
def publish(
    plan_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="PLAN.yaml",
            help="YAML plan: manifest-tool documents and/or compact `matrix` documents.",
            show_default=False,
        ),
    ] = None,
    platforms: Annotated[
        list[str] | None,
        typer.Option(
            "--platforms",
            metavar="OS/ARCH[/VARIANT],...",
            help="Without PLAN.yaml: the platforms of the one list (comma-separated, "
            "repeatable).",
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Without PLAN.yaml: the source image per platform; the first ARCH, OS and "
            "VARIANT are replaced (manifest-tool's from-args).",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Without PLAN.yaml: the list to publish."),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tags",
            metavar="TAG,...",
            help="With --target: extra tags (comma-separated, repeatable).",
        ),
    ] = None,
    annotations: Annotated[
        list[str] | None,
        typer.Option(
            "--annotations",
            metavar="KEY=VALUE,...",
            help="With --target: index annotations (comma-separated, repeatable).",
        ),
    ] = None,
    insecure: InsecureOpt = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            help=f"Requests in flight per registry (default {DEFAULT_CONCURRENCY}, or the "
            "configuration file's).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON report on stdout.")
    ] = False,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Write a JSON Lines report, one per list."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read only: show what would be pushed, mounted, moved."),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Re-resolve every tag and check every child afterwards."),
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option("--fail-fast", help="Stop before any write if a source does not resolve "
                     "or a list fails its checks (platforms, require_platforms)."),
    ] = False,
    json_style: Annotated[
        JsonStyleChoice,
        typer.Option("--json-style", help="Bytes of built lists: docker's 3-space indent, "
                     "manifest-tool's 2-space, or compact."),
    ] = JsonStyleChoice.docker,
    media_type: Annotated[
        MediaTypeChoice | None,
        typer.Option("--media-type", help="Media type of built lists: oci (an OCI index), "
                     "docker (a Docker manifest list) or auto (docker's rule: OCI when the "
                     "first entry is an OCI image); default: the plan's media_type, else auto."),
    ] = None,
    retry_deadline: Annotated[
        float | None,
        typer.Option("--retry-deadline", metavar="SECONDS", min=0.1,
                     help="How long a request is retried while a registry throttles (default "
                     "300, or the configuration file's); 5xx and connection errors are retried "
                     "for at most 60 s of it."),
    ] = None,
    lists_in_flight: Annotated[
        int | None,
        typer.Option("--lists-in-flight", min=1,
                     help="Lists published at once (default 32, or the configuration file's)."),
    ] = None,
    platform_check: PlatformCheckOpt = None,
    platform_filter: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            metavar="OS/ARCH[/VARIANT]",
            help="Publish only the images of each list matching one of these platforms "
            "(docker's --platform matching; comma-separated, repeatable); attestations "
            "follow their images.",
        ),
    ] = None,
    require_platforms: Annotated[
        list[str] | None,
        typer.Option(
            "--require-platforms",
            metavar="OS/ARCH[/VARIANT],...",
            help="Every list must have these platforms, or it fails before any write "
            "(comma-separated, repeatable; overrides the plan's require_platforms).",
        ),
    ] = None,
    attestations: Annotated[
        AttestationsChoice | None,
        typer.Option("--attestations", help="Keep or drop the attestation manifests of index "
                     "sources, for every list (default: the plan's `attestations`, else keep)."),
    ] = None,
    allow_duplicate_platforms: Annotated[
        bool,
        typer.Option("--allow-duplicate-platforms",
                     help="Allow two images with the same platform in a list, for every list "
                     "(default: the plan's `allow_duplicate_platforms`, else refused)."),
    ] = False,
    artifact_type: Annotated[
        str,
        typer.Option("--artifact-type", metavar="MEDIA_TYPE",
                     help="Every list's artifactType (OCI index only; overrides the plan's "
                     "artifact_type)."),
    ] = "",
    subject: Annotated[
        str,
        typer.Option("--subject", metavar="REF",
                     help="Every list's subject, a manifest in its repository (reference, "
                     "@DIGEST or :TAG; OCI index only; overrides the plan's subject)."),
    ] = "",
    labels_to_annotations: Annotated[
        bool | None,
        typer.Option("--labels-to-annotations/--no-labels-to-annotations",
                     help="Copy the org.opencontainers.image.* labels all images agree on into "
                     "the index annotations (default: the plan's labels_to_annotations)."),
    ] = None,
) -> None:
    """Publish every manifest list of a plan, concurrently.

    The plan is PLAN.yaml, or one list given by --target, --template and --platforms
    (manifest-tool's `push from-args`), never both.
    """
    from manyfest.cli.progress import PublishProgress, print_summary

    from_args = {"--platforms": platforms, "--template": template, "--target": target}
    given = [name for name, value in from_args.items() if value is not None]
    with_target = [n for n, v in (("--tags", tags), ("--annotations", annotations)) if v]
    try:
        if plan_file is not None:
            if given or with_target:
                raise UsageError(
                    f"PLAN.yaml and {', '.join(given + with_target)} cannot be used together",
                    hint="give a plan file, or --target, --template and --platforms",
                )
            plan = plans.load(plan_file, platform_check=_mode(platform_check) or None)
        elif not given:
            raise UsageError(
                "publish needs PLAN.yaml, or --target, --template and --platforms",
                hint="see `manyfest publish --help`",
            )
        elif platforms is None or template is None or target is None:
            missing = [name for name in from_args if name not in given]
            raise UsageError(
                f"{', '.join(given)} given without {' and '.join(missing)}",
                hint="a plan from arguments needs --target, --template and --platforms",
            )
        else:
            plan = plans.from_args(platforms, template, target, tags or [], annotations or [],
                                   platform_check=_mode(platform_check))
        filters = plans.platform_values(platform_filter or [], "--platform",
                                        _mode(platform_check))
        if require_platforms is not None:
            required = plans.platform_values(require_platforms, "--require-platforms",
                                             _mode(platform_check))
            plan = [dataclasses.replace(item, require_platforms=required) for item in plan]
    except ManyfestError as exc:
        raise _fail(exc) from None
    if attestations is not None:
        plan = [dataclasses.replace(p, attestations=attestations.value) for p in plan]
    if allow_duplicate_platforms:
        plan = [dataclasses.replace(p, allow_duplicate_platforms=True) for p in plan]
    if report_file is not None:
        _check_writable(report_file)
    progress = PublishProgress(len(plan), stderr, dry_run=dry_run)
    settings = _settings(insecure, concurrency, retry_deadline)
    options = PublishOptions(
        style=json_style.value, media_type=media_type.value if media_type else "",
        dry_run=dry_run, verify=verify,
        lists_in_flight=lists_in_flight or _lists_in_flight(),
        artifact_type=artifact_type, subject=subject,
        labels_to_annotations=labels_to_annotations,
    )
    try:
        plans.check_list_settings(
            options.media_type, {}, artifact_type, subject, False, where="publish"
        )
    except ManyfestError as exc:
        raise _fail(exc) from None

    stop = StopRequest()

    async def body() -> PublishReport:
        async with Session(settings, on_event=progress) as session:
            with progress:
                return await session.publish(
                    plan, options=options, fail_fast=fail_fast, stop=stop, platforms=filters
                )

    try:
        report = _execute(body, on_signal=lambda signum: stop.stop(interrupts.name(signum)))
    except _Stopped:
        # Only when the session itself failed to start or close: no list was published.
        raise _interrupted(
            f"0 of {len(plan)} lists published, {len(plan)} not published; re-run to finish"
        ) from None
    try:
        if json_out:
            sys.stdout.write(report.to_json().decode() + "\n")
            sys.stdout.flush()
        if report_file is not None:
            report.write_jsonl(report_file)
    except OSError as exc:
        raise _fail(ManyfestError(
            f"cannot write the report: {exc.strerror or exc}",
            hint="the lists were published as reported on stderr; check the disk and path",
        )) from None
    if report.interrupted is not None or interrupts.received() is not None:
        raise _interrupted(report.interruption_line())
    print_summary(report, stderr)
    if report.stopped_by is not None:
        raise _fail(report.stopped_by)
    if report.failed:
        if dry_run:
            raise _fail(PublishFailed(
                f"{report.failed} of {len(report.results)} lists would fail",
                hint="see the per-list errors above; nothing was written (--dry-run)",
            ))
        raise _fail(PublishFailed(f"{report.failed} of {len(report.results)} lists failed"))


def _lists_in_flight() -> int:
    """The configuration file's ``lists_in_flight`` (default 32)."""
    try:
        return config.load().lists_in_flight or 32
    except ManyfestError as exc:
        raise _fail(exc) from None


def _check_writable(path: Path) -> None:
    """Refuse, before any registry work, a --report path that cannot be written."""
    parent = path.resolve().parent
    problem = ""
    if path.is_dir():
        problem = "is a directory"
    elif not parent.is_dir():
        problem = f"directory {parent} does not exist"
    elif not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = "is not writable"
    if problem:
        raise _fail(UsageError(f"--report {path}: {problem}", hint="give a writable file path"))


def run() -> None:
    """Run the CLI: every usage error is one line on stderr, exit 2.

    The console script is :func:`manyfest.cli.entry.main`, which installs the signal
    handlers before importing this module; they are (re)installed here too, so ``run()``
    called directly (or by a console script installed before the entry module existed)
    still exits 130/143 with one line on SIGINT/SIGTERM.
    """
    from typer._click import exceptions as click_errors  # typer >= 0.26 vendors click

    interrupts.install()

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="manyfest", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        ctx = getattr(exc, "ctx", None)
        stderr.print(ctx.get_help() if ctx is not None else "", markup=False)
        sys.exit(2)
    except click_errors.UsageError as exc:
        ctx = getattr(exc, "ctx", None)
        sub = ctx.command.name if ctx is not None and ctx.parent is not None else None
        message = " ".join(exc.format_message().split()).rstrip(".")
        stderr.print(f"{message}; see `manyfest {sub + ' ' if sub else ''}--help`", markup=False)
        sys.exit(2)
    except click_errors.ClickException as exc:
        stderr.print(" ".join(exc.format_message().split()), markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print(Interrupted("interrupted").one_line(), markup=False)
        sys.exit(130)
    except Exception as exc:  # the last net: one line, never a traceback (unless -D)
        if _state["debug"]:
            raise
        stderr.print(unexpected(exc), markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def unexpected(exc: BaseException) -> str:
    """One line for an exception no layer mapped to a :class:`ManyfestError`.

    An ``OSError`` (a local file or directory: the store, ``$DOCKER_CONFIG``) says which path
    and why; anything else is a manyfest bug, said so, with how to see the traceback.
    """
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    if isinstance(exc, ManyfestError):
        return exc.one_line()
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}; check the path and its permissions"
    text = " ".join(str(exc).split()) or "no detail"
    return (f"internal error: {type(exc).__name__}: {text}; this is a manyfest bug: please "
            "report it with the output of the same command run with -D")
