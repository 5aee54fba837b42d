"""The ``manyfest`` application: the typer app, its options and the helpers every command
uses (one-line failures, exit codes, interrupts, the event sink of warnings).

Arguments, flags and output lines are docker's (``docker manifest --help``). Every failure
is one line on stderr saying what failed and what to do. Exit codes: 0 success, 1 failure,
2 usage error, 3 publish finished with some lists failed, 130 interrupted by SIGINT, 143 by
SIGTERM.

Interrupts (:mod:`manyfest.interrupts`): once a command runs, a signal is recorded and passed
to the running command, which stops (``publish`` stops starting lists and cancels those in
flight; the others are cancelled), writes what it must (``publish``: ``--json`` and
``--report``), prints one line saying what was done and what was not, and exits 130 / 143.
The commands are in :mod:`manyfest.cli.inspect`, :mod:`manyfest.cli.lists` and
:mod:`manyfest.cli.publish`; :mod:`manyfest.cli.main` runs them.

Start-up: this module and the command modules import only typer and manyfest's light
modules at their top; what a command needs (the engine, aiohttp, rich, the plan parser) is
imported in its body, so ``manyfest --help``, ``--version`` and the local-store commands
start without them (``tests/test_startup.py`` guards the import set).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import click
import typer

from manyfest import interrupts
from manyfest.cli import output
from manyfest.errors import Interrupted, ManyfestError, UsageError, first_error

if TYPE_CHECKING:
    from manyfest.events import Event, EventSink
    from manyfest.reference import Reference
    from manyfest.store import ListSettings
    from manyfest.transport.settings import Settings

T = TypeVar("T")


class AtLeast(click.ParamType[float]):
    """A number flag's click type: a whole number (``whole``) or a decimal one, at least
    ``low``. Unlike click's ranges, ``--help`` shows no ``[x>=1]``; a refused value fails
    with ``expected a whole number of at least 1`` (:mod:`manyfest.cli.usage` adds the
    flag and the value given)."""

    def __init__(self, low: float, *, whole: bool) -> None:
        self.low = low
        self.whole = whole
        self.name = "integer" if whole else "float"
        what = "a whole number" if whole else "a number"
        self.expected = f"{what} of at least {low:g}"
        """What the flag takes, in words."""

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        """``value`` as an int (``whole``) or a float, at least ``low``.

        Raises:
            click.BadParameter: not such a number.
        """
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: float = value
        else:
            try:
                number = int(str(value)) if self.whole else float(str(value))
            except ValueError:
                self.fail(f"expected {self.expected}, got {value!r}", param, ctx)
        if number != number or number < self.low:  # NaN too
            self.fail(f"expected {self.expected}, got {value!r}", param, ctx)
        return number


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
        "--platform-check", metavar="error|warn|off",
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


class ExistingChoice(enum.StrEnum):
    """``--existing`` values: what to do with a tag that holds another digest."""

    fail = "fail"
    skip = "skip"
    overwrite = "overwrite"


ExistingOpt = Annotated[
    ExistingChoice,
    typer.Option(
        "--existing", metavar="fail|skip|overwrite",
        help="A tag that holds another digest: overwrite it (the default; refused by "
        "registries with immutable tags), fail the list before any write, or skip it (left "
        "as it is; the list's other tags move).",
    ),
]
DigestsOpt = Annotated[
    str | None,
    typer.Option(
        "--digests", metavar="FILE",
        help="Write every digest the lists' tags hold when the run ends (created, updated "
        "and unchanged lists, --since's too; not failed ones), index and children, one per "
        "line as registry/repository@sha256:... (for cosign sign / notation sign), children "
        "before their list; replaced whole. - for stdout (not with --json or --dry-run).",
    ),
]
PushDigestsOpt = Annotated[
    str | None,
    typer.Option(
        "--digests", metavar="FILE",
        help="Write the pushed list's children and the list, one per line as "
        "registry/repository@sha256:... (for cosign sign / notation sign); empty when "
        "--existing skip left the tag; replaced whole. A file: stdout carries push's lines.",
    ),
]
class ReferrersChoice(enum.StrEnum):
    """``--referrers`` values: copy the children's referrers into the target, or skip them."""

    copy = "copy"
    skip = "skip"


ReferrersOpt = Annotated[
    ReferrersChoice,
    typer.Option(
        "--referrers", metavar="copy|skip",
        help="Copy the referrers of the manifests copied from another repository "
        "(signatures, SBOMs, attestations: referrers API, sha256-<hex> referrers tag, cosign "
        ".sig/.att/.sbom tags) with them, or skip them (no referrers request at all).",
    ),
]


AllowDuplicatesOpt = Annotated[
    bool,
    typer.Option(
        "--allow-duplicate-platforms",
        help="Allow two images with the same platform in one list (refused by default).",
    ),
]


def check_mode(choice: PlatformCheckChoice | None) -> str:
    """The ``platform_check`` value of a ``--platform-check`` choice ('' when not given)."""
    return choice.value if choice is not None else ""


class JsonStyleChoice(enum.StrEnum):
    """``--json-style`` values."""

    docker = "docker"
    manifest_tool = "manifest-tool"
    compact = "compact"

EXIT_CODES = ("Exit status: 0 success, 1 failure, 2 usage error, 3 publish finished with "
              "failed lists or copy with failed copies (the others were made), 130 interrupted "
              "(SIGINT), 143 terminated (SIGTERM).")
"""The exit codes, as ``manyfest --help`` ends (docker uses 1 for a wrong argument count and
125 for an unknown flag; manyfest gives every usage error 2, the shell's convention)."""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
"""click context settings of the root and of every command."""


def command_app() -> typer.Typer:
    """The typer app of one command module: plain help text (no rich), no completion options,
    no pretty exceptions. :mod:`manyfest.cli.main` loads a module, and builds its commands,
    only when one of them runs or its help is asked for."""
    return typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT_SETTINGS,
    )


state = {"debug": False}


class Stderr:
    """stderr for the commands' lines: plain text, one write and a flush per line (one JSON
    object per line with ``--log-format json``; see :mod:`manyfest.cli.output`).

    rich's console is loaded only where a command draws (``publish``'s progress), so a
    command that prints one line does not pay for it.
    """

    def print(self, text: str = "", *, end: str = "\n", markup: bool = False,
              highlight: bool = False, level: str = "info", event: str = "message") -> None:
        """Write ``text`` as one stderr line (``markup``/``highlight``: accepted for rich's
        signature, never interpreted; ``level``/``event``: for JSON logs). With an ``end``
        other than a newline (a prompt), ``text`` and ``end`` are written as they are."""
        del markup, highlight
        if end != "\n":
            output.write_stderr(f"{text}{end}")
            return
        output.emit(text, level=level, event=event)


stderr = Stderr()

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
        "--media-type", metavar="oci|docker|auto",
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


def list_settings(
    where: str,
    media_type: MediaTypeChoice | None,
    annotations: list[str] | None,
    artifact_type: str,
    subject: str,
    labels: bool,
) -> ListSettings:
    """The list settings of create/push's flags, checked (exit 2 on a bad one)."""
    from manyfest.ops import plan as plans
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
        raise fail(exc) from None
    return ListSettings(media_type=mt, annotations=parsed, artifact_type=artifact_type,
                        subject=subject, labels_to_annotations=labels)


def _version(value: bool) -> None:
    """``--version``: the installed distribution's version (its metadata), else, run from a
    source tree that is not installed, :data:`manyfest._version.__version__`."""
    if value:
        import importlib.metadata

        try:
            version = importlib.metadata.version("manyfest")
        except importlib.metadata.PackageNotFoundError:
            from manyfest._version import __version__ as version
        print(f"manyfest {version}")
        raise typer.Exit()


def main(
    debug: Annotated[
        bool, typer.Option("--debug", "-D", help="Show debug logs (each HTTP exchange, "
                           "secrets redacted; retries; throttling) and tracebacks. Accepted "
                           "anywhere on the line, as are the options below.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only data on stdout and errors on stderr.")
    ] = False,
    progress: Annotated[
        str, typer.Option("--progress", metavar="auto|tty|plain|none",
                          click_type=click.Choice(output.PROGRESS_MODES),
                          help="publish's progress: bars on a terminal, lines otherwise "
                          "(auto); bars (tty); lines (plain); none.")
    ] = "auto",
    log_format: Annotated[
        str, typer.Option("--log-format", metavar="text|json",
                          click_type=click.Choice(output.LOG_FORMATS),
                          help="stderr as text lines, or one JSON object per line (json).")
    ] = "text",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """manyfest: docker manifest's commands, and a bulk `publish`.

    stdout carries data only (digests, JSON, inspect's output, the dry-run diff, and docker's
    own stdout lines for docker's commands); progress, logs, warnings and errors go to stderr.
    """
    state["debug"] = debug
    output.options.debug = debug
    output.options.quiet = quiet
    output.options.progress = progress
    output.options.log_format = log_format
    output.configure_logging()


def begin_work() -> None:
    """Record that the command starts its work (:func:`manyfest.interrupts.command_started`):
    from here on it reports a signal itself; before, a grace period running out ends the
    process with "nothing was written". Called once a command's imports are done, right
    before it touches the store or a registry (``execute`` calls it)."""
    interrupts.command_started(
        again="stopped at once (a report not yet written is not written); re-run to finish"
    )


def fail(exc: ManyfestError) -> typer.Exit:
    """Print ``exc``'s one line on stderr; the exit for its exit code."""
    stderr.print(exc.one_line(), markup=False, level="error", event="error")
    return typer.Exit(exc.exit_code)


class Stopped(Exception):
    """The command body was cancelled by a signal (see :func:`execute`)."""


def interrupted_exit(text: str) -> typer.Exit:
    """Print ``interrupted by <SIG>: <text>`` on stderr; the exit for the signal (130/143)."""
    signum = interrupts.received()
    code = interrupts.exit_code(signum) if signum is not None else Interrupted.exit_code
    what = interrupts.name(signum) if signum is not None else "SIGINT"
    stderr.print(f"interrupted by {what}: {' '.join(text.split())}", markup=False,
                 level="error", event="interrupted")
    interrupts.mark_reported()
    return typer.Exit(code)


def execute(
    fn: Callable[[], Awaitable[T]], *, on_signal: Callable[[int], None] | None = None
) -> T:
    """Run an async command body; map errors to one stderr line and an exit code.

    A SIGINT/SIGTERM during the run (or before it, once the command started) is passed to
    ``on_signal`` in the event loop (``publish`` stops gracefully and returns); without
    ``on_signal`` the body is cancelled and :class:`Stopped` is raised.

    Raises:
        Stopped: the body was cancelled by a signal.
        typer.Exit: the body failed (one line printed).
    """
    import asyncio

    import anyio

    begin_work()
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
        raise Stopped

    try:
        return anyio.run(guarded)
    except Stopped:
        raise
    except ManyfestError as exc:
        if cancelled or interrupts.received() is not None:
            raise Stopped from None
        if state["debug"]:
            raise
        raise fail(exc) from None
    except BaseExceptionGroup as group:
        leaf = first_error(group)
        if interrupts.received() is not None:
            raise Stopped from None
        if isinstance(leaf, ManyfestError) and not state["debug"]:
            raise fail(leaf) from None
        if isinstance(leaf, KeyboardInterrupt):
            raise fail(Interrupted("interrupted")) from None
        raise
    except KeyboardInterrupt:
        raise fail(Interrupted("interrupted")) from None


def print_warning(event: Event) -> None:
    """The event sink of the docker-style commands: a :class:`Warned` event is one
    ``warning: ...`` line on stderr (none with ``-q``); other events are not shown."""
    from manyfest.events import Warned

    if isinstance(event, Warned) and not output.options.quiet:
        stderr.print(f"warning: {event.message}", markup=False, highlight=False,
                     level="warning", event="warning")


def sink(shown: EventSink = print_warning) -> EventSink:
    """The event sink of a command: ``shown`` and, with ``-D``, a debug log record per event
    (logger ``manyfest.events``: retries with their cause and wait, throttling, each blob
    mounted or copied, each child and list pushed)."""
    if not output.options.debug:
        return shown
    import logging

    log = logging.getLogger("manyfest.events")

    def logged(event: Event) -> None:
        fields = event_fields(event)
        text = " ".join(part for part in (event.kind, event.target, event.detail) if part)
        log.debug("%s", text, extra={"event": event.kind, "fields": fields})
        shown(event)

    return logged


def event_fields(event: Event) -> dict[str, object]:
    """An event's fields as JSON values (a finished list: target, status, digest, error)."""
    from manyfest.events import Finished

    if isinstance(event, Finished):
        result = event.result
        if result is None:
            return {"target": event.target}
        return {"target": event.target, "status": result.status, "digest": result.digest,
                "error": result.error.one_line() if result.error else None}
    import msgspec

    fields: dict[str, object] = msgspec.to_builtins(event)
    return fields


def parse_ref(text: str) -> Reference:
    """``text`` parsed as docker parses a reference (exit 2 with one line when invalid)."""
    from manyfest import reference

    try:
        return reference.parse(text)
    except ManyfestError as exc:
        raise fail(exc) from None


def settings_from(
    insecure: bool, concurrency: int | None = None, retry_deadline: float | None = None
) -> Settings:
    """Settings from the configuration file with the command line's flags on top."""
    from manyfest import config

    try:
        return config.settings(config.load(), insecure=insecure, concurrency=concurrency,
                               retry_deadline=retry_deadline)
    except ManyfestError as exc:
        raise fail(exc) from None
