"""``manyfest copy``: an image or a whole index copied exactly to other repositories."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from manyfest.cli import output
from manyfest.cli.app import (
    AtLeast,
    ExistingChoice,
    InsecureOpt,
    ReferrersChoice,
    ReferrersOpt,
    Stopped,
    command_app,
    execute,
    fail,
    interrupted_exit,
    settings_from,
    sink,
    stderr,
)
from manyfest.errors import ManyfestError, PublishFailed, UsageError

if TYPE_CHECKING:  # imported in the command's body: see manyfest.cli.app on start-up
    from manyfest.engine import ListResult
    from manyfest.ops.publish import PublishReport

app = command_app()
"""This module's commands (loaded by :mod:`manyfest.cli.main` when one runs)."""


@app.command()
def copy(
    source: Annotated[str, typer.Argument(metavar="SRC", hidden=True)],
    targets: Annotated[list[str], typer.Argument(metavar="DST...", hidden=True)],
    all_tags: Annotated[
        bool,
        typer.Option("--all-tags", "-a",
                     help="Copy every tag of the SRC repository into each DST repository "
                     "(SRC and DST are repositories, without tag)."),
    ] = False,
    insecure: InsecureOpt = False,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", metavar="N", click_type=AtLeast(1, whole=True),
                     help="Requests in flight per registry (default: the configuration "
                     "file's, else the built-in default)."),
    ] = None,
    copies_in_flight: Annotated[
        int,
        typer.Option("--copies-in-flight", metavar="N", click_type=AtLeast(1, whole=True),
                     help="Copies run at once (tags with --all-tags, times DSTs)."),
    ] = 32,
    retry_deadline: Annotated[
        float | None,
        typer.Option("--retry-deadline", metavar="SECONDS",
                     click_type=AtLeast(0.1, whole=False),
                     help="How long a request is retried while a registry throttles."),
    ] = None,
    tag_page_size: Annotated[
        int,
        typer.Option("--tag-page-size", metavar="N", click_type=AtLeast(1, whole=True),
                     help="With --all-tags: tags asked for per page of the registry's tag "
                     "list (the n parameter; pages are followed to the end)."),
    ] = 1000,
    referrers: ReferrersOpt = ReferrersChoice.copy,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read only: print on stdout what would be copied "
                     "(the children each target lacks, the tag moves)."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON report on stdout instead of lines "
                           "(publish's report; each result has kind copy and its source).")
    ] = False,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE",
                     help="Write a JSON Lines report, one line per copy."),
    ] = None,
    existing: Annotated[
        ExistingChoice,
        typer.Option("--existing", metavar="fail|skip|overwrite",
                     help="A DST tag that holds another digest: overwrite it (the default, as "
                     "skopeo copy and crane copy do; refused by registries with immutable "
                     "tags), fail that copy before any write, or skip it (left as it is)."),
    ] = ExistingChoice.overwrite,
    digests: Annotated[
        str | None,
        typer.Option("--digests", metavar="FILE",
                     help="Write every digest the DST tags hold when the run ends (copies "
                     "made or unchanged; not failed or --existing skip ones): each index's "
                     "children, then the index or image, one per line as "
                     "registry/repository@sha256:... (for cosign sign / notation sign); "
                     "replaced whole. A file: stdout carries copy's lines."),
    ] = None,
) -> None:
    """Copy an image or a whole index to other repositories, digests unchanged.

    SRC is an image manifest or an index (every child comes along: images, attestation
    manifests, artifacts, nested indexes), copied byte for byte: each DST gets the same
    digest. A DST with a tag gets that tag; a DST repository gets SRC's tag (SRC named by
    digest alone: the digest, no tag). What a target already has is skipped: a tag already
    at the digest is left alone (nothing written); children and blobs present are not
    copied again. A DST tag that holds another digest is moved (--existing overwrite, as
    skopeo copy and crane copy do; a registry with immutable tags refuses it in its words),
    or the copy fails before any write (fail), or the tag is kept (skip). The referrers of
    what is copied come along (signatures, SBOMs, attestations of SRC and of each child
    copied; --referrers skip leaves them).

    stdout: one line per copy, `<status> <DST>@<digest> from <SRC>` (status created,
    updated or unchanged; --dry-run: `would create ...`, `would update ...`, and the
    children it would copy; a tag --existing skip kept: `kept <DST>@<digest it holds>
    (--existing skip), not <digest> from <SRC>`); when every copy put one digest, that
    digest alone on the last line. Exit 3: some copies failed (each on stderr); 1: every
    copy failed.

    \b
    Examples:
      manyfest copy staging.example/app:1.2.3 registry.example/app
      manyfest copy staging.example/app:1.2.3 registry.example/app:1.2.3 mirror.example/app
      manyfest copy --all-tags staging.example/app registry.example/app
    """
    from manyfest.api import Session
    from manyfest.ops.copy import copy_report
    from manyfest.ops.plan import check_copy

    try:
        plan = check_copy(source, targets, all_tags=all_tags)
    except ManyfestError as exc:
        raise fail(exc) from None
    if report_file is not None:
        from manyfest.cli.publish import _check_writable

        _check_writable(report_file)
    if digests is not None:
        check_digests(digests)
    settings = settings_from(insecure, concurrency, retry_deadline)

    async def body() -> PublishReport:
        async with Session(settings, on_event=sink()) as session:
            report = await copy_report(
                session.engine, [plan], dry_run=dry_run, in_flight=copies_in_flight,
                page_size=tag_page_size, existing=existing.value,
                referrers="skip" if referrers is ReferrersChoice.skip else "copy")
            if digests is not None:  # copies found unchanged: their children
                from manyfest.ops.digests import fill_children

                await fill_children(session.engine, report.results, copies_in_flight)
            return report

    try:
        report = execute(body)
    except Stopped:
        raise interrupted_exit("the copies in flight were cut off: a target tag moves only "
                               "once its whole tree is present, so it points at the copy "
                               "or still where it was; re-run to finish") from None
    try:
        if json_out:
            for chunk in report.json_chunks():
                sys.stdout.write(chunk.decode())
            sys.stdout.write("\n")
        else:
            print_copies(report.results, dry_run=dry_run)
        sys.stdout.flush()
        if report_file is not None:
            report.write_jsonl(report_file)
    except OSError as exc:
        raise fail(ManyfestError(
            f"cannot write the report: {exc.strerror or exc}",
            hint="the copies were made as printed; check the disk and path",
        )) from None
    if digests is not None:
        from manyfest.ops.digests import digest_lines, write

        try:
            write(digests, digest_lines(report.results))
        except OSError as exc:
            raise fail(ManyfestError(
                f"cannot write --digests {digests}: {exc.strerror or exc}",
                hint="the copies were made as printed; check the disk and path",
            )) from None
    for result in report.results:
        if result.error is not None:
            stderr.print(copy_error_line(result), level="error", event="error")
    finish(report.results, dry_run=dry_run)


def check_digests(value: str) -> None:
    """Refuse, before any request, a ``--digests`` value ``copy`` cannot write: ``-``
    (stdout carries copy's own lines) or a path that cannot be written."""
    from manyfest.cli.publish import _check_writable

    if value == "-":
        raise fail(UsageError("copy --digests -: stdout carries copy's own lines",
                              hint="give --digests a file path"))
    _check_writable(Path(value), flag="--digests")


def copy_line(result: ListResult, *, dry_run: bool = False) -> str:
    """One copy's stdout line: ``<status> <target>@<digest> from <source>`` (``--dry-run``:
    ``would create``/``would update``/``unchanged``); a tag ``--existing skip`` kept:
    ``kept <target>@<digest it holds> (--existing skip), not <digest> from <source>``."""
    if result.existing and result.status == "unchanged":
        [held] = result.existing.values()
        return (f"kept {result.target}@{held} (--existing skip), not {result.digest} from "
                f"{result.source}")
    status: str = result.status
    if dry_run and status in ("created", "updated"):
        status = "would " + status[:-1]
    where = str(result.target) if result.target.digest else f"{result.target}@{result.digest}"
    return f"{status} {where} from {result.source}"


def copy_error_line(result: ListResult) -> str:
    """A failed copy's stderr line: which copy, then the error's one line (the reference
    and the registry's answer)."""
    assert result.error is not None
    return f"copy {result.source} to {result.target} failed: {result.error.one_line()}"


def print_copies(results: list[ListResult], *, dry_run: bool = False) -> None:
    """The copies' stdout lines (failed ones have theirs on stderr), then the digest alone
    when every copy made (or unchanged) has the same one, also when others failed (what
    landed, as docker and crane print it; the exit status says some failed); with
    ``dry_run`` each copy's actions, indented."""
    lines: list[str] = []
    for r in results:
        if r.status == "failed":
            continue
        lines.append(copy_line(r, dry_run=dry_run))
        lines.extend(f"  {a}" for a in r.actions if dry_run)
    done = [r for r in results if r.status != "failed"]
    # the digest alone when every copy that did not fail put it (none kept by --existing
    # skip, whose tag holds another digest)
    if done and len({r.digest for r in done}) == 1 and not any(r.existing for r in done):
        lines.append(done[0].digest)
    sys.stdout.write("".join(line + "\n" for line in lines))


def finish(results: list[ListResult], *, dry_run: bool = False) -> None:
    """Exit as docs/exit-codes.md says: 0 every copy made (or unchanged), 3 some failed,
    else (every copy failed) the first error's code."""
    failed = [r for r in results if r.status == "failed"]
    if not results and not output.options.quiet:
        stderr.print("nothing to copy: the source repository has no tag")
    if not failed:
        return
    if len(failed) == len(results):
        first = failed[0].error
        assert first is not None
        raise typer.Exit(first.exit_code)
    word = "would fail" if dry_run else "failed"
    raise fail(PublishFailed(f"{len(failed)} of {output.plural(len(results), 'copy', 'copies')} "
                             f"{word}", hint="see the errors above; re-run to retry the "
                             "failed copies (what was copied is skipped)"))
