"""The local-list commands, docker's: ``create``, ``annotate`` (and ``annotate --remote``),
``push``, ``rm``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from manyfest import interrupts
from manyfest.cli import output
from manyfest.cli.app import (
    AllowDuplicatesOpt,
    AnnotationOpt,
    ArtifactTypeOpt,
    AttestationsChoice,
    ExistingChoice,
    ExistingOpt,
    InsecureOpt,
    LabelsOpt,
    MediaTypeOpt,
    PlatformCheckOpt,
    PushDigestsOpt,
    ReferrersChoice,
    ReferrersOpt,
    Stopped,
    SubjectOpt,
    begin_work,
    check_mode,
    command_app,
    execute,
    fail,
    interrupted_exit,
    list_settings,
    parse_ref,
    print_warning,
    settings_from,
    sink,
    stderr,
)
from manyfest.cli.completion import complete_list, complete_list_image
from manyfest.cli.output import plural
from manyfest.errors import ManyfestError, UsageError

if TYPE_CHECKING:  # imported in the commands' bodies: see manyfest.cli.app on start-up
    from manyfest.api import Session
    from manyfest.ops.manifests import PushOutcome
    from manyfest.ops.remote_annotate import EntryChange, RemoteAnnotation
    from manyfest.reference import Reference


app = command_app()
"""This module's commands (loaded by :mod:`manyfest.cli.main` when one runs)."""


@app.command()
def create(
    refs: Annotated[list[str], typer.Argument(
        metavar="MANIFEST_LIST MANIFEST [MANIFEST...]",
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    )],
    amend: Annotated[
        bool, typer.Option("--amend", "-a", help="Amend an existing manifest list")
    ] = False,
    insecure: InsecureOpt = False,
    platform_check: PlatformCheckOpt = None,
    attestations: Annotated[
        AttestationsChoice,
        typer.Option("--attestations", metavar="keep|drop",
                     help="Keep or drop the attestation manifests of index "
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

    \b
    Example:
      manyfest create registry.example/app:1.0 \\
        registry.example/app:1.0-amd64 registry.example/app:1.0-arm64
    """
    from manyfest.api import Session

    if len(refs) < 2:
        raise fail(UsageError(
            '"create" requires at least 2 arguments (usage: manyfest create [OPTIONS] '
            "MANIFEST_LIST MANIFEST [MANIFEST...])", hint="see `manyfest create --help`",
        ))
    parsed = [parse_ref(r) for r in refs]
    wanted = list_settings(str(parsed[0]), media_type, annotation, artifact_type, subject,
                            labels_to_annotations)

    async def body() -> None:
        async with Session(settings_from(insecure), on_event=sink()) as session:
            await session.create(
                parsed[0], parsed[1:], amend=amend, platform_check=check_mode(platform_check),
                attestations=attestations.value,
                allow_duplicate_platforms=allow_duplicate_platforms, settings=wanted,
            )

    try:
        execute(body)
    except Stopped:
        # The store is written in one step after every image resolved, between two awaits:
        # a cancelled body never wrote anything.
        raise interrupted_exit(
            f"nothing was written to the local store; re-run to create {parsed[0]}"
        ) from None
    if not output.options.quiet:  # docker's stdout line (-q: none)
        print(f"Created manifest list {parsed[0]}")
    if interrupts.received() is not None:
        raise interrupted_exit(f"the local list {parsed[0]} had already been created")


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
            raise fail(UsageError(
                f"--annotation {value!r}: expected KEY=VALUE",
                hint="write --annotation KEY=VALUE (KEY= sets an empty value; "
                "--remove-annotation KEY removes one)",
            ))
        out[key] = text
    for key in removed:
        if not key or "=" in key:
            raise fail(UsageError(f"--remove-annotation {key!r}: expected a KEY",
                                   hint="write --remove-annotation KEY (no value)"))
        if key in out:
            raise fail(UsageError(f"annotation {key!r} is both set and removed",
                                   hint="give --annotation or --remove-annotation for a key"))
    return out


@app.command()
def annotate(
    list_ref: Annotated[str, typer.Argument(
        metavar="MANIFEST_LIST", autocompletion=complete_list,
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    )],
    image_ref: Annotated[str, typer.Argument(
        metavar="MANIFEST", autocompletion=complete_list_image,
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    )],
    arch: Annotated[str, typer.Option("--arch", metavar="ARCH", help="Set architecture")] = "",
    os_: Annotated[str, typer.Option("--os", metavar="OS", help="Set operating system")] = "",
    os_version: Annotated[
        str, typer.Option("--os-version", metavar="VERSION",
                          help="Set operating system version")
    ] = "",
    os_features: Annotated[
        list[str] | None, typer.Option("--os-features", metavar="FEATURE[,FEATURE...]",
                                       help="Set operating system feature")
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant", metavar="VARIANT",
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
    """Add additional information to a local image manifest.

    With --remote, the entry of a list in a registry instead: the index is rewritten with
    only this change and pushed to its tag.

    \b
    Examples:
      manyfest annotate --os linux --arch arm --variant v7 \\
        registry.example/app:1.0 registry.example/app:1.0-armv7
      manyfest annotate --remote --annotation org.example.note=ok \\
        registry.example/app:1.0 linux/arm64
    """
    removed = list(remove_annotation or [])
    annotations = _annotation_flags(list(annotation or []), removed)
    features = _split_features(os_features or [])
    lref = parse_ref(list_ref)
    if remote:
        from manyfest.ops.remote_annotate import EntryChange

        change = EntryChange(os_, arch, variant, os_version, tuple(features),
                             tuple(annotations.items()), tuple(removed))
        if not (change.touches_platform or annotations or removed):
            raise fail(UsageError(
                "annotate --remote: nothing to change",
                hint="give --annotation, --remove-annotation or a platform flag (--os, "
                "--arch, --variant, --os-version, --os-features)",
            ))
        _annotate_remote(lref, image_ref, change, insecure, check_mode(platform_check),
                         allow_duplicate_platforms)
        return
    iref = parse_ref(image_ref)
    from manyfest.events import Warned
    from manyfest.ops.local import annotate as annotate_local
    from manyfest.store import ManifestStore

    try:
        begin_work()
        annotate_local(
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
            platform_check=check_mode(platform_check),
            warn=lambda message: print_warning(Warned(target=str(lref), message=message)),
            allow_duplicate_platforms=allow_duplicate_platforms,
        )
    except ManyfestError as exc:
        if interrupts.received() is not None:
            raise interrupted_exit(f"annotate failed: {exc.one_line()}") from None
        raise fail(exc) from None
    if interrupts.received() is not None:
        raise interrupted_exit(f"{iref} in {lref} had already been annotated")


def _annotate_remote(
    list_ref: Reference, entry: str, change: EntryChange, insecure: bool,
    platform_check: str, allow_duplicate_platforms: bool,
) -> None:
    """``annotate --remote``: the new digest on stdout (unchanged: a note on stderr too)."""
    from manyfest.api import Session
    from manyfest.events import Warned

    sessions: list[Session] = []

    async def body() -> RemoteAnnotation:
        async with Session(settings_from(insecure), on_event=sink()) as session:
            sessions.append(session)
            return await session.annotate_remote(
                list_ref, entry, change, platform_check=platform_check,
                allow_duplicate_platforms=allow_duplicate_platforms,
                warn=lambda message: print_warning(Warned(target=str(list_ref), message=message)),
            )

    try:
        outcome = execute(body)
    except Stopped:
        client = sessions[0].client if sessions else None
        key = str(list_ref)
        if client is not None and key in client.tags_written:
            text = f"the index PUT had landed: {list_ref} points at the annotated index"
        elif client is not None and key in client.tags_in_flight:
            text = (f"the index PUT to {list_ref} was in flight: the tag may point at the "
                    "annotated index or still where it was; re-run annotate to settle it")
        else:
            text = f"{list_ref} was left where it was (nothing was written); re-run to annotate"
        raise interrupted_exit(text) from None
    if not outcome.changed and not output.options.quiet:
        stderr.print(f"{list_ref}: entry {outcome.entry} already has these values; "
                     "nothing was written", markup=False)
    print(outcome.digest)
    if interrupts.received() is not None:
        raise interrupted_exit(f"{list_ref} had already been annotated: it points at "
                           f"{outcome.digest}")


@app.command()
def push(
    list_ref: Annotated[str, typer.Argument(
        metavar="MANIFEST_LIST", autocompletion=complete_list,
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    )],
    purge: Annotated[
        bool, typer.Option("--purge", "-p", help="Remove the local manifest list after push")
    ] = False,
    insecure: InsecureOpt = False,
    media_type: MediaTypeOpt = None,
    annotation: AnnotationOpt = None,
    artifact_type: ArtifactTypeOpt = "",
    subject: SubjectOpt = "",
    labels_to_annotations: LabelsOpt = False,
    existing: ExistingOpt = ExistingChoice.overwrite,
    digests: PushDigestsOpt = None,
    referrers: ReferrersOpt = ReferrersChoice.copy,
) -> None:
    """Push a manifest list to a repository.

    --media-type, --annotation, --artifact-type, --subject and --labels-to-annotations
    override what `create` stored for the list. The list's digest is the last line printed.

    \b
    Example:
      manyfest push --purge registry.example/app:1.0
    """
    from manyfest.api import Session

    ref = parse_ref(list_ref)
    wanted = list_settings(str(ref), media_type, annotation, artifact_type, subject,
                            labels_to_annotations)
    if digests is not None:
        _check_push_digests(digests)

    sessions: list[Session] = []

    async def body() -> PushOutcome:
        async with Session(settings_from(insecure), on_event=sink()) as session:
            sessions.append(session)
            session.engine.referrers.mode = "skip" if referrers is ReferrersChoice.skip else "copy"
            return await session.push(ref, purge=purge, settings=wanted,
                                      existing=existing.value)

    try:
        outcome = execute(body)
    except Stopped:
        raise interrupted_exit(_push_stopped(ref, sessions)) from None
    # docker's stdout lines; -q: the list digest alone.
    for line in outcome.lines()[-1:] if output.options.quiet else outcome.lines():
        print(line)
    if outcome.skipped and not output.options.quiet:
        held = ", ".join(f"{ref.with_tag(t)} holds {d}" for t, d in outcome.existing.items())
        stderr.print(f"{held}: left as it is (--existing skip); nothing was pushed"
                     + ("; the local list is kept" if purge else ""), markup=False)
    if digests is not None:
        _push_digests(digests, outcome)
    if interrupts.received() is not None:
        raise interrupted_exit(f"{ref} had already been pushed: it points at {outcome.digest}")


def _check_push_digests(value: str) -> None:
    """Refuse a ``--digests`` value ``push`` cannot write: ``-`` (stdout carries docker's
    lines) or a path that cannot be written; before any request."""
    from pathlib import Path

    from manyfest.cli.publish import _check_writable

    if value == "-":
        raise fail(UsageError("push --digests -: stdout carries push's own lines",
                              hint="give --digests a file path"))
    _check_writable(Path(value), flag="--digests")


def _push_digests(target: str, outcome: PushOutcome) -> None:
    """``push --digests``: the list's children, then the list (nothing when ``--existing
    skip`` left the tag), written atomically (:mod:`manyfest.ops.digests`)."""
    from manyfest.ops.digests import list_lines, write

    lines = [] if outcome.skipped else list_lines(outcome.target.name, outcome.children,
                                                  outcome.digest)
    try:
        write(target, lines)
    except OSError as exc:
        raise fail(ManyfestError(
            f"cannot write --digests {target}: {exc.strerror or exc}",
            hint=f"{outcome.target} was pushed; check the disk and path",
        )) from None


def _push_stopped(ref: Reference, sessions: list[Session]) -> str:
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
    list_refs: Annotated[list[str], typer.Argument(
        metavar="MANIFEST_LIST [MANIFEST_LIST...]", autocompletion=complete_list,
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    )],
) -> None:
    """Delete one or more manifest lists from local storage.

    \b
    Example:
      manyfest rm registry.example/app:1.0 registry.example/app:1.1
    """
    from manyfest.ops.local import remove
    from manyfest.store import ManifestStore

    refs = [parse_ref(r) for r in list_refs]
    begin_work()
    errors = remove(ManifestStore(), refs)
    for exc in errors:
        stderr.print(exc.one_line(), markup=False, level="error", event="error")
    if interrupts.received() is not None:
        raise interrupted_exit(f"rm had already run: {len(refs) - len(errors)} of "
                               f"{plural(len(refs), 'local list')} removed")
    if errors:
        raise typer.Exit(1)
