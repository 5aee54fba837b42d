"""``manyfest publish``: every list of a plan, concurrently."""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from manyfest import interrupts
from manyfest.cli import output
from manyfest.cli.app import (
    AtLeast,
    AttestationsChoice,
    DigestsOpt,
    ExistingChoice,
    ExistingOpt,
    InsecureOpt,
    JsonStyleChoice,
    MediaTypeChoice,
    PlatformCheckOpt,
    ReferrersChoice,
    ReferrersOpt,
    Stopped,
    check_mode,
    command_app,
    execute,
    fail,
    interrupted_exit,
    settings_from,
    sink,
)
from manyfest.errors import ManyfestError, PublishFailed, UsageError
from manyfest.transport.settings import DEFAULT_CONCURRENCY
from manyfest.words import plural

if TYPE_CHECKING:  # imported in the command's body: see manyfest.cli.app on start-up
    from manyfest.api import Session
    from manyfest.cli.progress import PublishProgress
    from manyfest.engine import PublishOptions
    from manyfest.ops.plan import PlanCopy, PlanList
    from manyfest.ops.publish import PublishReport, StopRequest


app = command_app()
"""This module's commands (loaded by :mod:`manyfest.cli.main` when one runs)."""


class UnchangedByChoice(enum.StrEnum):
    """``--unchanged-by`` values."""

    digest = "digest"
    children = "children"


@app.command()
def publish(
    plan_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="PLAN.yaml",
            hidden=True,  # no Arguments: section (docker has none): the usage line names it
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
            "--template", metavar="IMAGE",
            help="Without PLAN.yaml: the source image per platform; the first ARCH, OS and "
            "VARIANT are replaced (manifest-tool's from-args).",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", metavar="LIST",
                     help="Without PLAN.yaml: the list to publish (a reference with a tag)."),
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
            "--concurrency", metavar="N", click_type=AtLeast(1, whole=True),
            help=f"Requests in flight per registry (default {DEFAULT_CONCURRENCY}, or the "
            "configuration file's).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON report on stdout (with --dry-run: "
                           "instead of the diff).")
    ] = False,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Write a JSON Lines report, one per list."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read only: print on stdout what would be created, "
                     "updated or left unchanged, per list with digests, and what would be "
                     "pushed, mounted, moved."),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Re-resolve every tag and check every child afterwards."),
    ] = False,
    atomic: Annotated[
        bool,
        typer.Option("--atomic", help="All or none: push every child and list by digest "
                     "first, then move every tag; a failure moves no tag (first phase) or "
                     "moves the tags back (second phase)."),
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option("--fail-fast", help="Stop before any write if a source does not resolve "
                     "or a list fails its checks (platforms, require_platforms)."),
    ] = False,
    json_style: Annotated[
        JsonStyleChoice,
        typer.Option("--json-style", metavar="docker|manifest-tool|compact",
                     help="Bytes of built lists: docker's 3-space indent, "
                     "manifest-tool's 2-space, or compact."),
    ] = JsonStyleChoice.docker,
    media_type: Annotated[
        MediaTypeChoice | None,
        typer.Option("--media-type", metavar="oci|docker|auto",
                     help="Media type of built lists: oci (an OCI index), "
                     "docker (a Docker manifest list) or auto (docker's rule: OCI when the "
                     "first entry is an OCI image); default: the plan's media_type, else auto."),
    ] = None,
    retry_deadline: Annotated[
        float | None,
        typer.Option("--retry-deadline", metavar="SECONDS",
                     click_type=AtLeast(0.1, whole=False),
                     help="How long a request is retried while a registry throttles (default "
                     "300, or the configuration file's); 5xx and connection errors are retried "
                     "for at most 60 s of it."),
    ] = None,
    lists_in_flight: Annotated[
        int | None,
        typer.Option("--lists-in-flight", metavar="N", click_type=AtLeast(1, whole=True),
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
        typer.Option("--attestations", metavar="keep|drop",
                     help="Keep or drop the attestation manifests of index "
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
    mirrors: Annotated[
        list[str] | None,
        typer.Option("--mirror", metavar="REGISTRY",
                     help="Also publish every list to the same repository path and tags on "
                     "REGISTRY (host[:port]; repeatable): each mirror is a report line of "
                     "its own, sources are read once, a failing mirror fails only its lists."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", metavar="K/N",
                     help="Publish only shard K of N (1 <= K <= N): the plan's lists split by "
                     "target repository (a repository's lists, and a list's targets and "
                     "mirrors, stay together), the same split in every job; merge the shards' "
                     "--report files with `manyfest report merge` (docs/releases.md)."),
    ] = None,
    since: Annotated[
        Path | None,
        typer.Option("--since", metavar="REPORT",
                     help="A previous run's --report (or --json) file: lists whose plan entry "
                     "and sources are unchanged since are checked with one HEAD of their tag "
                     "(a HEAD per source tag, no manifest GET)."),
    ] = None,
    trust_report: Annotated[
        bool,
        typer.Option("--trust-report",
                     help="With --since: lists whose plan entry and sources match the report "
                     "are unchanged without the HEAD of their tag."),
    ] = False,
    unchanged_by: Annotated[
        UnchangedByChoice,
        typer.Option("--unchanged-by", metavar="digest|children",
                     help="A tag is unchanged when it holds the list's digest, or (children) "
                     "a list with the same children and platforms in another JSON layout "
                     "(kept as it is)."),
    ] = UnchangedByChoice.digest,
    existing: ExistingOpt = ExistingChoice.overwrite,
    digests: DigestsOpt = None,
    referrers: ReferrersOpt = ReferrersChoice.copy,
) -> None:
    """Publish every manifest list of a plan, concurrently.

    The plan is PLAN.yaml (manifest-tool documents and/or compact `matrix` documents), or
    one list given by --target, --template and --platforms (manifest-tool's `push
    from-args`), never both. Exit status 3: some lists failed.

    stdout carries data only: --json's report, or --dry-run's diff. Progress (phases, counts,
    rate, ETA, requests, throttling, lists in flight), one line per list and the summary go
    to stderr (see --progress, -q, --log-format in `manyfest --help`).

    \b
    Examples:
      manyfest publish --dry-run plan.yaml
      manyfest publish --report report.jsonl plan.yaml
      manyfest publish --shard 2/4 --report report-2.jsonl plan.yaml
      manyfest publish --mirror ghcr.io --mirror registry.example:5000 plan.yaml
      manyfest publish --target registry.example/app:1.0 \\
        --template registry.example/app-OS-ARCHVARIANT:1.0 \\
        --platforms linux/amd64,linux/arm64/v8,linux/arm/v7
    """
    from manyfest.api import Session
    from manyfest.cli.progress import PublishProgress, print_plan, print_summary
    from manyfest.engine import PublishOptions
    from manyfest.ops import plan as plans
    from manyfest.ops import shard as shards
    from manyfest.ops.publish import StopRequest
    from manyfest.ops.since import Since, read_report

    copies: list[PlanCopy] = []
    from_args = {"--platforms": platforms, "--template": template, "--target": target}
    given = [name for name, value in from_args.items() if value is not None]
    with_target = [n for n, v in (("--tags", tags), ("--annotations", annotations)) if v]
    try:
        part = shards.parse(shard) if shard is not None else None
        for registry in mirrors or ():
            plans.check_mirror(registry)
        if plan_file is not None:
            if given or with_target:
                raise UsageError(
                    f"PLAN.yaml and {', '.join(given + with_target)} cannot be used together",
                    hint="give a plan file, or --target, --template and --platforms",
                )
            loaded = plans.load_plan(plan_file, platform_check=check_mode(platform_check) or None)
            plan, copies = loaded.lists, loaded.copies
            _check_copies(copies, part is not None, atomic)
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
                                   platform_check=check_mode(platform_check))
        if mirrors:
            plan = plans.mirror(plan, mirrors)
        whole, plan = plan, shards.select(plan, *part) if part is not None else plan
        filters = plans.platform_values(platform_filter or [], "--platform",
                                        check_mode(platform_check))
        if require_platforms is not None:
            required = plans.platform_values(require_platforms, "--require-platforms",
                                             check_mode(platform_check))
            plan = [dataclasses.replace(item, require_platforms=required) for item in plan]
    except ManyfestError as exc:
        raise fail(exc) from None
    if attestations is not None:
        plan = [dataclasses.replace(p, attestations=attestations.value) for p in plan]
    if allow_duplicate_platforms:
        plan = [dataclasses.replace(p, allow_duplicate_platforms=True) for p in plan]
    if report_file is not None:
        _check_writable(report_file)
    if digests is not None:
        _check_digests(digests, json_out=json_out, dry_run=dry_run)
    previous: Since | None = None
    try:
        if trust_report and since is None:
            raise UsageError("--trust-report needs --since REPORT",
                             hint="give the report of an earlier run with --since")
        if since is not None:
            previous = read_report(since, trust=trust_report)
    except ManyfestError as exc:
        raise fail(exc) from None
    if part is not None and _empty_shard(whole, plan, part, json_out, report_file, dry_run):
        return
    mode = output.progress_mode()
    progress = PublishProgress(len(plan), mode=mode, dry_run=dry_run,
                               errors_only=output.options.quiet)
    settings = settings_from(insecure, concurrency, retry_deadline)
    options = PublishOptions(
        style=json_style.value, media_type=media_type.value if media_type else "",
        dry_run=dry_run, verify=verify,
        lists_in_flight=lists_in_flight or _lists_in_flight(),
        artifact_type=artifact_type, subject=subject,
        labels_to_annotations=labels_to_annotations, atomic=atomic,
        unchanged_by="children" if unchanged_by is UnchangedByChoice.children else "digest",
        existing=existing.value,
        referrers="skip" if referrers is ReferrersChoice.skip else "copy",
    )
    try:
        plans.check_list_settings(
            options.media_type, {}, artifact_type, subject, False, where="publish"
        )
    except ManyfestError as exc:
        raise fail(exc) from None

    _freeze_long_lived(len(plan))
    stop = StopRequest()

    async def body() -> PublishReport:
        async with Session(settings, on_event=sink(progress)) as session:
            progress.counters = session.transport.total
            with progress:
                copied = await _run_copies(session, copies, progress, options, stop)
                present = None
                if copied:
                    from manyfest.ops.copy import brought

                    present = brought(copied.results)
                done = await session.publish(
                    plan, options=options, fail_fast=fail_fast, stop=stop, platforms=filters,
                    since=previous, brought=present,
                )
            if digests is not None:  # lists --since proved unchanged: their children
                from manyfest.ops.digests import fill_children

                await fill_children(session.engine, done.results, options.lists_in_flight)
            return _with_copies(done, copied)

    try:
        report = execute(body, on_signal=lambda signum: stop.stop(interrupts.name(signum)))
    except Stopped:
        # Only when the session itself failed to start or close: no list was published.
        raise interrupted_exit(
            f"0 of {output.plural(len(plan), 'list')} published, {len(plan)} not published; "
            "re-run to finish"
        ) from None
    try:
        if json_out:
            for chunk in report.json_chunks():  # streamed: never the whole report at once
                sys.stdout.write(chunk.decode())
            sys.stdout.write("\n")
            sys.stdout.flush()
        elif dry_run and report.interrupted is None and atomic:
            _print_plan(report)
        elif dry_run and report.interrupted is None:
            print_plan(report)
        if report_file is not None:
            report.write_jsonl(report_file)
        if digests is not None:
            _write_digests(digests, report)
    except OSError as exc:
        raise fail(ManyfestError(
            f"cannot write the report: {exc.strerror or exc}",
            hint="the lists were published as reported on stderr; check the disk and path",
        )) from None
    if report.interrupted is not None or interrupts.received() is not None:
        raise interrupted_exit(report.atomic_line or report.interruption_line())
    print_summary(report, mode=mode, verify=verify, console=progress.console)
    if report.stopped_by is not None:
        raise fail(report.stopped_by)
    if report.failed:
        if dry_run:
            raise fail(PublishFailed(
                f"{report.failed} of {output.plural(len(report.results), 'list')} would fail",
                hint="see the per-list errors; nothing was written (--dry-run)",
            ))
        if report.atomic_line:
            raise fail(PublishFailed(report.atomic_line, hint=_atomic_hint(report)))
        raise fail(PublishFailed(
            f"{report.failed} of {output.plural(len(report.results), 'list')} failed"
        ))


def _check_copies(copies: list[PlanCopy], sharded: bool, atomic: bool) -> None:
    """Refuse ``copy:`` documents with ``--shard`` or ``--atomic`` (neither is defined for
    copies yet: a shard would run every copy, ``--atomic`` could not move their tags back).

    Raises:
        UsageError: the plan has copies and one of those flags was given.
    """
    flags = [f for f, given in (("--shard", sharded), ("--atomic", atomic)) if given]
    if copies and flags:
        raise UsageError(
            f"the plan has {plural(len(copies), 'copy: document')}, which {' and '.join(flags)} "
            "does not take",
            hint="run the copy: documents in a plan of their own (or with manyfest copy)",
        )


async def _run_copies(session: Session, copies: list[PlanCopy], progress: PublishProgress,
                      options: PublishOptions, stop: StopRequest) -> PublishReport | None:
    """A plan's ``copy:`` documents, before its lists (a list may name what a copy brings
    as a source), on the run's engine: one throttle per registry, shared work. ``None``
    when the plan has none.

    Raises:
        ManyfestError: listing an ``all_tags`` source's tags failed (before any list).
    """
    if not copies:
        return None
    from manyfest.events import Phase
    from manyfest.ops import copy as copying
    from manyfest.ops.publish import PublishReport

    engine, transport = session.engine, session.transport
    total = transport.total
    before = (total.requests, total.retries, total.throttled, total.manifest_gets,
              total.manifest_heads)
    per_registry = transport.registry_stats()
    started = time.monotonic()
    report = PublishReport(dry_run=options.dry_run)
    with stop.scope():
        pairs = await copying.expand(engine, copies)
        progress.total += len(pairs)
        engine.on_event(Phase(name="copy", total=len(pairs)))
        report.results = await copying.run_copies(engine, pairs, dry_run=options.dry_run,
                                                  in_flight=options.lists_in_flight,
                                                  existing=options.existing,
                                                  referrers=options.referrers)
    copying.add_totals(report, transport, before, per_registry, started)
    return report


def _with_copies(report: PublishReport, copied: PublishReport | None) -> PublishReport:
    """The run's report: the copies' results first (they ran first), then the lists';
    the copies' requests and time added to the totals."""
    if copied is None:
        return report
    report.results[:0] = copied.results
    report.requests += copied.requests
    report.retries += copied.retries
    report.throttled += copied.throttled
    report.manifest_gets += copied.manifest_gets
    report.manifest_heads += copied.manifest_heads
    report.duration_s += copied.duration_s
    for name, counts in copied.registries.items():
        into = report.registries.setdefault(name, {})
        for k, v in counts.items():
            into[k] = into.get(k, 0) + v
    return report


def _atomic_hint(report: PublishReport) -> str:
    """The advice after an ``--atomic`` release that was not published."""
    outcome = (report.atomic or {}).get("outcome")
    if outcome == "phase 1 failed":
        return "see the per-list errors above; fix the failing lists and re-run (no tag moved)"
    return ("see the per-list errors above; re-run to publish the release once the cause "
            "is fixed")


def _empty_shard(whole: list[PlanList], plan: list[PlanList], part: tuple[int, int],
                 json_out: bool, report_file: Path | None, dry_run: bool) -> bool:
    """``--shard K/N``: say on stderr what the shard holds (unless -q; a ``shard`` event
    whose fields are :func:`manyfest.ops.shard.counts` with ``--log-format json``); True
    when it holds no list, after writing the empty ``--json`` report and ``--report`` file
    (exit 0)."""
    from manyfest.ops import shard as shards
    from manyfest.ops.publish import PublishReport

    line = shards.describe(whole, plan, *part) + ("" if plan else ": nothing to publish")
    if not output.options.quiet:
        output.emit(line, level="info", event="shard",
                    fields=shards.counts(whole, plan, *part))
    if plan:
        return False
    report = PublishReport(dry_run=dry_run)
    try:
        if json_out:
            sys.stdout.write(report.to_json().decode() + "\n")
            sys.stdout.flush()
        if report_file is not None:
            report.write_jsonl(report_file)
    except OSError as exc:
        raise fail(ManyfestError(f"cannot write the report: {exc.strerror or exc}",
                                 hint="check the disk and path")) from None
    return True


def _print_plan(report: PublishReport) -> None:
    """``--atomic --dry-run``: the two phases on stdout
    (:func:`manyfest.cli.progress.atomic_plan_lines`)."""
    from manyfest.cli.progress import atomic_plan_lines

    sys.stdout.write("".join(line + "\n" for line in atomic_plan_lines(report)))
    sys.stdout.flush()


FREEZE_LISTS = 1000
"""Plans of at least this many lists have the objects alive before the run (imports, the
plan) moved out of the cyclic garbage collector's reach (:func:`gc.freeze`)."""


def _freeze_long_lived(lists: int) -> None:
    """Before a big run: collect once, then freeze what is alive (it lives until the process
    ends). Every full collection otherwise walks the whole plan again: at 10,000 lists that
    was most of the collector's time, which grew per list with the plan."""
    if lists >= FREEZE_LISTS:
        import gc

        gc.collect()
        gc.freeze()


def _lists_in_flight() -> int:
    """The configuration file's ``lists_in_flight`` (default 32)."""
    from manyfest import config

    try:
        return config.load().lists_in_flight or 32
    except ManyfestError as exc:
        raise fail(exc) from None


def _write_digests(target: str, report: PublishReport) -> None:
    """``--digests``: the published digests (:mod:`manyfest.ops.digests`), written
    atomically (also on a run with failed lists: theirs are left out).

    Raises:
        typer.Exit: the file could not be written (exit 1; the lists stay published).
    """
    from manyfest.ops.digests import digest_lines, write

    try:
        write(target, digest_lines(report.results))
    except OSError as exc:
        raise fail(ManyfestError(
            f"cannot write --digests {target}: {exc.strerror or exc}",
            hint="the lists were published as reported on stderr; check the disk and path",
        )) from None


def _check_digests(value: str, *, json_out: bool, dry_run: bool) -> None:
    """Refuse, before any registry work, a ``--digests`` value that cannot be written:
    ``-`` while stdout carries ``--json``'s report or ``--dry-run``'s diff, or a path that
    cannot be written."""
    if value == "-":
        if json_out or dry_run:
            raise fail(UsageError(
                f"--digests - and {'--json' if json_out else '--dry-run'} both write on stdout",
                hint="give --digests a file path",
            ))
        return
    _check_writable(Path(value), flag="--digests")


def _check_writable(path: Path, flag: str = "--report") -> None:
    """Refuse, before any registry work, a --report (or ``flag``) path that cannot be
    written."""
    parent = path.resolve().parent
    problem = ""
    if path.is_dir():
        problem = "is a directory"
    elif not parent.is_dir():
        problem = f"directory {parent} does not exist"
    elif not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = "is not writable"
    if problem:
        raise fail(UsageError(f"{flag} {path}: {problem}", hint="give a writable file path"))
