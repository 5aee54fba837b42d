"""``manyfest report merge``: reading reports (JSON Lines and the --json document), the merge
rules (order, identical copies, conflicts), pass-through of every key, the atomic output,
the messages and the exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manyfest.engine import ListResult
from manyfest.errors import NotPublishedError, UsageError
from manyfest.ops import reports
from manyfest.ops.publish import PublishReport
from manyfest.reference import parse
from tests.helpers import manyfest
from tests.test_startup import _heavy, _imports

FORM = ("a report is JSON Lines as `manyfest publish --report` writes it (one object per "
        "list), publish's --json document, or one list's object")
DRY = ("a --dry-run run publishes nothing: merge the reports of real runs only, or of "
       "--dry-run runs only")
CONFLICT = ("each list belongs in one shard's report: give each shard's report once (its "
            "latest run), all of the shards of one plan")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _line(target: str, tags: list[str], status: str = "created", digest: str = D1,
          requests: int = 7, **extra: object) -> dict[str, object]:
    return {"target": target, "tags": tags, "digest": digest, "status": status,
            "requests": requests, **extra}


def _write(path: Path, *objects: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects))
    return path


def _error(call: object) -> UsageError:
    with pytest.raises(UsageError) as info:
        call()  # type: ignore[operator]
    assert info.value.exit_code == 2
    return info.value


# --- reading -------------------------------------------------------------------------------

def test_json_lines_are_passed_through_as_written(tmp_path: Path) -> None:
    """Keys unknown to the merge (other branches' `plan_key`, `sources`, `atomic`...) and the
    exact bytes of each line are kept; blank lines and CRLF endings are dropped."""
    first = (b'{"target": "reg.example/ns/app:1",  "tags": ["1", "latest"], "status": '
             b'"created", "digest": "' + D1.encode() + b'", "requests": 9, '
             b'"plan_key": "sha256:ab", "sources": {"reg.example/src:1": "sha256:cd"}, '
             b'"future": [1.5, null, {"deep": "\\u00e9t\xc3\xa9"}]}')
    second = b'{"target":"reg.example/ns/app:2","tags":["2"],"status":"failed","error":"x"}'
    path = tmp_path / "r.jsonl"
    path.write_bytes(first + b"\r\n\n   \n" + second + b"\n\n")
    entries = reports.read(path)
    assert [e.where for e in entries] == [f"{path}:1", f"{path}:4"]
    assert [e.raw for e in entries] == [first, second]
    assert entries[0].fields["future"] == [1.5, None, {"deep": "été"}]
    assert entries[1].requests == 0  # no requests key: counted as 0
    merged = reports.merge([entries])
    assert merged.to_jsonl() == first + b"\n" + second + b"\n"


def test_json_document_is_read_as_its_results(tmp_path: Path) -> None:
    """publish's --json document: its results, in order, written as --report writes them
    (the summary is not a list)."""
    report = PublishReport(results=[
        ListResult(parse("reg.example/ns/app:1"), ["1", "latest"], D1, "", "created",
                   requests=12, duration_s=0.25, actions=["push child"]),
        ListResult(parse("reg.example/ns/app:2"), ["2"], "", D2, "failed",
                   error=NotPublishedError("not published: x", hint="re-run"), requests=3),
    ], requests=15)
    doc = tmp_path / "report.json"
    doc.write_bytes(report.to_json())
    lines = tmp_path / "report.jsonl"
    report.write_jsonl(lines)
    from_doc = reports.read(doc)
    assert [e.where for e in from_doc] == [f"{doc}: results[0]", f"{doc}: results[1]"]
    assert reports.merge([from_doc]).to_jsonl() == lines.read_bytes() == report.to_jsonl()
    assert reports.merge([reports.read(lines)]).to_jsonl() == report.to_jsonl()


def test_an_empty_report_holds_no_list(tmp_path: Path) -> None:
    for data in (b"", b"\n", b"  \n\n"):
        (tmp_path / "empty.jsonl").write_bytes(data)
        assert reports.read(tmp_path / "empty.jsonl") == []
    (tmp_path / "empty.json").write_bytes(PublishReport().to_json())
    assert reports.read(tmp_path / "empty.json") == []


def test_a_one_line_report_is_json_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.jsonl", _line("reg.example/a:1", ["1"], results="kept"))
    (entry,) = reports.read(path)
    assert entry.where == f"{path}:1"
    assert entry.fields["results"] == "kept"


@pytest.mark.parametrize(("text", "problem"), [
    ('{"target": "reg.example/a:1", "tags": ["1"], "status": "created"\n',
     "not JSON (Input data was truncated)"),
    ('[1, 2]\n', "expected a JSON object (one list), got list"),
    ('"text"\n', "expected a JSON object (one list), got str"),
    ('{"tags": ["1"], "status": "created"}\n', "no target (a list's reference)"),
    ('{"target": 5, "tags": ["1"], "status": "created"}\n',
     "target: expected a reference, got 5"),
    ('{"target": "Reg/App:1", "tags": ["1"], "status": "created"}\n',
     "target: invalid reference format: 'Reg/App:1': repository name must be lowercase"),
    ('{"target": "reg.example/a@sha256:' + "1" * 64 + '", "tags": [], "status": "created"}\n',
     "target: 'reg.example/a@sha256:" + "1" * 64 + "' is not a reference with a tag"),
    ('{"target": "reg.example/a:1", "tags": "1", "status": "created"}\n',
     "tags: expected a list of tags, got '1'"),
    ('{"target": "reg.example/a:1", "tags": ["no tag!"], "status": "created"}\n',
     "tags: expected a list of tags, got ['no tag!']"),
    ('{"target": "reg.example/a:1", "tags": ["1"], "status": "published"}\n',
     "status: expected one of created, updated, unchanged, failed, got 'published'"),
    ('{"target": "reg.example/a:1", "tags": ["1"]}\n',
     "status: expected one of created, updated, unchanged, failed, got None"),
    ('{"target": "reg.example/a:1", "tags": ["1"], "status": "created", "requests": true}\n',
     "requests: expected a whole number, got True"),
    ('{"target": "reg.example/a:1", "tags": ["1"], "status": "created", "requests": 1.5}\n',
     "requests: expected a whole number, got 1.5"),
])
def test_a_malformed_line_names_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "r.jsonl"
    good = json.dumps(_line("reg.example/ok:1", ["1"]))
    path.write_text(f"{good}\n\n{text}")
    error = _error(lambda: reports.read(path))
    assert error.one_line() == f"{path}:3: {problem}; {FORM}"


def test_a_malformed_document_names_the_result(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": [_line("reg.example/a:1", ["1"]), {"tags": []}],
                                "summary": {}}, indent=2))
    assert _error(lambda: reports.read(path)).one_line() == (
        f"{path}: results[1]: no target (a list's reference); {FORM}")
    path.write_text('{"results": {"a": 1}, "summary": {}}')
    assert _error(lambda: reports.read(path)).one_line() == (
        f"{path}: results: expected a list of lists' reports; {FORM}")


def test_one_pretty_printed_object_is_one_list(tmp_path: Path) -> None:
    """QA: a list's object pretty-printed (jq, json.dumps(indent=2)) gave `not JSON (Input
    data was truncated)`. It is one list, named by the file alone, written compactly with
    its keys in the order read; a one-line object stays JSON Lines (its bytes kept)."""
    obj = _line("reg.example/a:1", ["1", "latest"], plan_key="sha256:ab", dry_run=False)
    path = tmp_path / "one.json"
    path.write_text(json.dumps(obj, indent=2) + "\n")
    (entry,) = reports.read(path)
    assert entry.where == str(path)
    assert entry.fields == obj
    assert reports.merge([[entry]]).to_jsonl() == (
        json.dumps(obj, separators=(",", ":")) + "\n").encode()
    spaced = b'{"target": "reg.example/a:1",   "tags": ["1"], "status": "created"}'
    path.write_bytes(b"\n" + spaced + b"\n\n")
    (entry,) = reports.read(path)
    assert (entry.where, entry.raw) == (f"{path}:2", spaced)
    # a pretty-printed object that is not a list's report: the rule that fails, by file
    path.write_text(json.dumps({"summary": {"lists": 1}}, indent=2))
    assert _error(lambda: reports.read(path)).one_line() == (
        f"{path}: no target (a list's reference); {FORM}")
    path.write_text(json.dumps(_line("reg.example/a:1", ["1"], status="done"), indent=2))
    assert _error(lambda: reports.read(path)).one_line() == (
        f"{path}: status: expected one of created, updated, unchanged, failed, got 'done'; "
        f"{FORM}")
    # two pretty-printed objects are neither: the first line is not JSON
    path.write_text(json.dumps(obj, indent=2) + "\n" + json.dumps(obj, indent=2))
    assert _error(lambda: reports.read(path)).one_line() == (
        f"{path}:1: not JSON (Input data was truncated); {FORM}")


def test_dry_run_must_be_a_boolean(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", _line("reg.example/a:1", ["1"], dry_run="yes"))
    assert _error(lambda: reports.read(path)).one_line() == (
        f"{path}:1: dry_run: expected true or false, got 'yes'; {FORM}")
    path = _write(tmp_path / "r.jsonl", _line("reg.example/a:1", ["1"], dry_run=False),
                  _line("reg.example/a:2", ["2"], dry_run=True))
    assert [e.dry_run for e in reports.read(path)] == [False, True]


def test_text_that_is_not_utf8_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"target": "reg.example/a:1", "tags": ["\xff"], "status": "created"}\n')
    assert _error(lambda: reports.read(path)).message.startswith(f"{path}:1: not JSON (")


def test_an_unreadable_report(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    assert _error(lambda: reports.read(missing)).one_line() == (
        f"cannot read report {missing}: No such file or directory; give the --report files "
        "of the publish runs")
    assert _error(lambda: reports.read(tmp_path)).one_line() == (
        f"cannot read report {tmp_path}: Is a directory; give the --report files of the "
        "publish runs")


# --- merging -------------------------------------------------------------------------------

def test_order_is_files_given_then_lines(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/z:1", ["1"]),
               _line("reg.example/a:1", ["1"]))
    b = _write(tmp_path / "b.jsonl", _line("reg.example/m:1", ["1"]))
    merged = reports.merge([reports.read(b), reports.read(a)])
    assert [str(e.target) for e in merged.entries] == [
        "reg.example/m:1", "reg.example/z:1", "reg.example/a:1"]
    assert merged.reports == 2


def test_identical_lists_are_kept_once(tmp_path: Path) -> None:
    """The same report given twice (or a line repeated): one copy, whatever the spacing or
    key order of the copies; the summary says how many were dropped."""
    one = _line("reg.example/a:1", ["1", "latest"], extra={"k": [1, 2]})
    a = _write(tmp_path / "a.jsonl", one, _line("reg.example/b:1", ["1"]))
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps(dict(reversed(list(one.items()))), indent=None) + "\n")
    merged = reports.merge([reports.read(a), reports.read(a), reports.read(b)])
    assert [str(e.target) for e in merged.entries] == ["reg.example/a:1", "reg.example/b:1"]
    assert merged.duplicates == 3
    assert merged.summary() == ("merged 3 reports: 2 lists (2 created), 14 requests; "
                                "3 identical copies of a list dropped")


def test_the_same_target_twice_is_refused(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/ns/app:1", ["1"]))
    b = _write(tmp_path / "b.jsonl", _line("reg.example/ns/other:1", ["1"]),
               _line("reg.example/ns/app:1", ["1"], status="unchanged"))
    error = _error(lambda: reports.merge([reports.read(a), reports.read(b)]))
    assert error.one_line() == (
        f"{a}:1 and {b}:2 both have reg.example/ns/app:1 as their target; {CONFLICT}")


def test_a_tag_in_two_lists_is_refused(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/ns/app:1.2.3", ["1.2.3", "1", "latest"]))
    b = _write(tmp_path / "b.jsonl", _line("reg.example/ns/app:2.0.0", ["2.0.0", "latest"]))
    error = _error(lambda: reports.merge([reports.read(a), reports.read(b)]))
    assert error.one_line() == (
        f"{a}:1 and {b}:1 both have reg.example/ns/app:latest (a tag of "
        f"reg.example/ns/app:1.2.3; a tag of reg.example/ns/app:2.0.0); {CONFLICT}")
    # a tag of one list that is another's target, within one file
    c = _write(tmp_path / "c.jsonl", _line("reg.example/ns/app:latest", ["latest"]),
               _line("reg.example/ns/app:3", ["3", "latest"]))
    assert _error(lambda: reports.merge([reports.read(c)])).one_line() == (
        f"{c}:1 and {c}:2 both have reg.example/ns/app:latest (a list's target; a tag of "
        f"reg.example/ns/app:3); {CONFLICT}")


def test_dry_run_and_real_lists_are_not_merged(tmp_path: Path) -> None:
    """QA: `publish --dry-run` lines merged with real ones without a word. A mix is refused,
    naming the first line of each kind; dry-run lines only merge, and the summary says
    "(dry run)"."""
    real = _write(tmp_path / "real.jsonl", _line("reg.example/a:1", ["1"]),
                  _line("reg.example/a:2", ["2"]))
    dry = _write(tmp_path / "dry.jsonl", _line("reg.example/b:1", ["1"], dry_run=True,
                                               requests=3),
                 _line("reg.example/b:2", ["2"], status="unchanged", dry_run=True,
                       requests=2))
    error = _error(lambda: reports.merge([reports.read(real), reports.read(dry)]))
    assert error.one_line() == (
        f"{dry}:1 is a list of a --dry-run run and {real}:1 a list of a real run; {DRY}")
    error = _error(lambda: reports.merge([reports.read(dry), reports.read(real)]))
    assert error.one_line() == (
        f"{dry}:1 is a list of a --dry-run run and {real}:1 a list of a real run; {DRY}")
    # within one file too
    mixed = _write(tmp_path / "mixed.jsonl", _line("reg.example/c:1", ["1"], dry_run=False),
                   _line("reg.example/c:2", ["2"], dry_run=True))
    assert _error(lambda: reports.merge([reports.read(mixed)])).one_line() == (
        f"{mixed}:2 is a list of a --dry-run run and {mixed}:1 a list of a real run; {DRY}")
    other = _write(tmp_path / "dry-2.jsonl", _line("reg.example/c:1", ["1"], dry_run=True,
                                                   status="failed", requests=1))
    merged = reports.merge([reports.read(dry), reports.read(other), reports.read(dry)])
    assert merged.dry_run is True
    assert merged.summary() == (
        "merged 3 reports (dry run): 3 lists (1 created, 1 unchanged, 1 failed: "
        "reg.example/c:1), 6 requests; 2 identical copies of a list dropped")
    assert reports.merge([reports.read(real)]).dry_run is False
    assert reports.merge([]).dry_run is False


def test_summary_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", _line("reg.example/a:1", ["1"], requests=5),
                  _line("reg.example/a:2", ["2"], status="failed", requests=2),
                  _line("reg.example/a:3", ["3"], status="unchanged", requests=1))
    merged = reports.merge([reports.read(path), reports.read(path)])
    assert merged.fields() == {
        "reports": 2, "lists": 3, "created": 1, "updated": 0, "unchanged": 1, "failed": 1,
        "failed_targets": ["reg.example/a:2"], "requests": 8, "duplicates": 3,
        "dry_run": False}


def test_host_and_host_80_are_one_registry(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/ns/app:1", ["1", "x"]))
    b = _write(tmp_path / "b.jsonl", _line("reg.example:80/ns/app:2", ["2", "x"]))
    error = _error(lambda: reports.merge([reports.read(a), reports.read(b)]))
    assert error.message.startswith(f"{a}:1 and {b}:1 both have reg.example:80/ns/app:x (")


def test_same_tag_in_other_repositories_is_no_conflict(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/ns/app:1", ["1", "latest"]),
               _line("reg.example/ns/tool:1", ["1", "latest"]),
               _line("other.example/ns/app:1", ["1", "latest"]))
    assert len(reports.merge([reports.read(a)]).entries) == 3


def test_summary_wording(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.jsonl", _line("reg.example/a:1", ["1"], requests=1))
    assert reports.merge([reports.read(one)]).summary() == (
        "merged 1 report: 1 list (1 created), 1 request")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert reports.merge([reports.read(empty)]).summary() == "merged 1 report: 0 lists, 0 requests"
    many = _write(tmp_path / "many.jsonl", *[
        _line(f"reg.example/r{i}:1", ["1"], status=status, requests=2)
        for i, status in enumerate(["failed", "unchanged", "failed", "updated", "failed",
                                    "failed", "failed", "created"])
    ])
    assert reports.merge([reports.read(many)]).summary() == (
        "merged 1 report: 8 lists (1 created, 1 updated, 1 unchanged, 5 failed: "
        "reg.example/r0:1, reg.example/r2:1, reg.example/r4:1 and 2 more), 16 requests")


# --- writing -------------------------------------------------------------------------------

def test_write_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    """QA: `-o` over a 0444 file made it 0644. An existing file keeps its permission bits
    (the rename replaces it all the same); a new file gets 0666 less the umask."""
    out = tmp_path / "report.jsonl"
    for mode in (0o444, 0o640, 0o600):
        out.write_bytes(b"old\n")
        out.chmod(mode)
        reports.write(out, b"new\n")
        assert (out.read_bytes(), out.stat().st_mode & 0o7777) == (b"new\n", mode)
    umask = os.umask(0o022)
    os.umask(umask)
    fresh = tmp_path / "fresh.jsonl"
    reports.write(fresh, b"x\n")
    assert fresh.stat().st_mode & 0o7777 == 0o666 & ~umask
    # through a symbolic link: the file it names keeps its mode, the link stays a link
    link = tmp_path / "link.jsonl"
    link.symlink_to(out)
    out.chmod(0o444)
    reports.write(link, b"linked\n")
    assert link.is_symlink()
    assert (out.read_bytes(), out.stat().st_mode & 0o7777) == (b"linked\n", 0o444)


def test_write_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "report.jsonl"
    out.write_bytes(b"old\n")
    other = tmp_path / "link.jsonl"
    os.link(out, other)  # a rename replaces the name; writing in place would change both
    reports.write(out, b"new\n")
    assert (out.read_bytes(), other.read_bytes()) == (b"new\n", b"old\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "link.jsonl", "report.jsonl"]
    with pytest.raises(IsADirectoryError):
        reports.write(tmp_path, b"x\n")  # a directory: nothing replaced, nothing left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "link.jsonl", "report.jsonl"]


# --- the command ---------------------------------------------------------------------------

def test_merge_to_stdout_with_summary_on_stderr(tmp_path: Path) -> None:
    a = _write(tmp_path / "report-1.jsonl", _line("reg.example/a:1", ["1"], requests=10),
               _line("reg.example/a:2", ["2"], status="failed", digest="", requests=4,
                     error="reg.example/a:2: boom; re-run"))
    b = tmp_path / "report-2.jsonl"
    b.write_text("")
    c = _write(tmp_path / "report-3.jsonl", _line("reg.example/b:1", ["1"], status="unchanged",
                                                  requests=1, atomic=True))
    proc = manyfest("report", "merge", str(a), str(b), str(c))
    assert proc.returncode == 0, proc.stderr  # failed lists: still exit 0 (documented)
    assert proc.stdout == a.read_text() + c.read_text()
    assert proc.stderr == ("merged 3 reports: 3 lists (1 created, 1 unchanged, 1 failed: "
                           "reg.example/a:2), 15 requests\n")
    quiet = manyfest("-q", "report", "merge", str(a), str(c))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, proc.stdout, "")


def test_merge_to_a_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/a:1", ["1"]))
    doc = tmp_path / "b.json"
    doc.write_text(json.dumps({"results": [_line("reg.example/b:1", ["1"])], "summary": {}},
                              indent=2))
    out = tmp_path / "merged.jsonl"
    out.write_text("stale\n")
    proc = manyfest("report", "merge", "-o", str(out), str(a), str(doc))
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert proc.stderr == "merged 2 reports: 2 lists (2 created), 14 requests\n"
    assert out.read_text() == a.read_text() + json.dumps(
        _line("reg.example/b:1", ["1"]), separators=(",", ":")) + "\n"
    # the output may be one of the inputs: every input is read before it is replaced
    proc = manyfest("report", "merge", "--output", str(a), str(a), str(doc))
    assert proc.returncode == 0, proc.stderr
    assert a.read_text() == out.read_text()


def test_output_dash_is_stdout(tmp_path: Path) -> None:
    """QA: `-o -` made a file named `-`."""
    a = _write(tmp_path / "a.jsonl", _line("reg.example/a:1", ["1"]))
    proc = subprocess.run([sys.executable, "-m", "manyfest", "report", "merge", "-o", "-",
                           str(a)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          check=False)
    assert (proc.returncode, proc.stdout) == (0, a.read_text()), proc.stderr
    assert proc.stderr == "merged 1 report: 1 list (1 created), 7 requests\n"
    assert not (tmp_path / "-").exists()


def test_output_over_a_read_only_file_keeps_its_mode(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/a:1", ["1"]))
    out = tmp_path / "merged.jsonl"
    out.write_text("stale\n")
    out.chmod(0o444)
    proc = manyfest("report", "merge", "-o", str(out), str(a))
    assert proc.returncode == 0, proc.stderr
    assert (out.read_text(), out.stat().st_mode & 0o7777) == (a.read_text(), 0o444)


def test_dry_run_reports_in_the_command(tmp_path: Path) -> None:
    real = _write(tmp_path / "real.jsonl", _line("reg.example/a:1", ["1"]))
    dry = _write(tmp_path / "dry.jsonl", _line("reg.example/b:1", ["1"], dry_run=True))
    out = tmp_path / "out.jsonl"
    proc = manyfest("report", "merge", "-o", str(out), str(real), str(dry))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"{dry}:1 is a list of a --dry-run run and {real}:1 a list of a "
                           f"real run; {DRY}\n")
    assert not out.exists()
    proc = manyfest("report", "merge", str(dry))
    assert (proc.returncode, proc.stdout) == (0, dry.read_text())
    assert proc.stderr == "merged 1 report (dry run): 1 list (1 created), 7 requests\n"


def test_the_summary_event_carries_the_counts(tmp_path: Path) -> None:
    """--log-format json: the summary is a ``summary`` event with the counts as fields."""
    a = _write(tmp_path / "a.jsonl", _line("reg.example/a:1", ["1"], requests=4),
               _line("reg.example/a:2", ["2"], status="failed", requests=1))
    b = _write(tmp_path / "b.jsonl", _line("reg.example/b:1", ["1"], status="updated",
                                           requests=2))
    proc = manyfest("--log-format", "json", "report", "merge", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    event = json.loads(line)
    assert (event["level"], event["event"]) == ("info", "summary")
    assert event["message"] == ("merged 2 reports: 3 lists (1 created, 1 updated, 1 failed: "
                                "reg.example/a:2), 7 requests")
    assert event["fields"] == {
        "reports": 2, "lists": 3, "created": 1, "updated": 1, "unchanged": 0, "failed": 1,
        "failed_targets": ["reg.example/a:2"], "requests": 7, "duplicates": 0,
        "dry_run": False}


def test_merge_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", _line("reg.example/a:1", ["1", "latest"]))
    b = _write(tmp_path / "b.jsonl", _line("reg.example/a:2", ["2", "latest"]))
    out = tmp_path / "out.jsonl"
    proc = manyfest("report", "merge", "-o", str(out), str(a), str(b))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"{a}:1 and {b}:1 both have reg.example/a:latest (a tag of "
                           f"reg.example/a:1; a tag of reg.example/a:2); {CONFLICT}\n")
    assert not out.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\nnot json\n")
    proc = manyfest("report", "merge", str(a), str(bad))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"{bad}:1: no target (a list's reference); {FORM}\n"
    proc = manyfest("report", "merge", "-o", str(tmp_path / "no" / "dir.jsonl"), str(a))
    assert proc.returncode == 2
    assert proc.stderr == (f"--output {tmp_path / 'no' / 'dir.jsonl'}: cannot write it: No such "
                           "file or directory; give a writable file path\n")
    proc = manyfest("report", "merge", "-o", str(tmp_path), str(a))
    assert proc.returncode == 2
    assert proc.stderr == (f"--output {tmp_path}: cannot write it: Is a directory; give a "
                           "writable file path\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "bad.jsonl",
                                                          "home"]


def test_publish_since_refuses_a_line_as_merge_does(tmp_path: Path) -> None:
    # One reader for both commands: the same line is refused with the same message (publish
    # prefixes --since), one line, exit 2, before any request (no registry listens on :1).
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: 127.0.0.1:1/app:1\nmanifests:\n  - image: 127.0.0.1:1/a@{D1}\n")
    for i, text in enumerate(['{"target": 1}\n',
                              '{"target": "reg.example/a:1", "tags": ["1"]}\n',
                              '{"target": "reg.example/a:1", "tags": "1", "status": "created"}\n',
                              '{"results": [{"tags": []}], "summary": {}}']):
        bad = tmp_path / f"bad{i}.jsonl"
        bad.write_text(text)
        merged = manyfest("report", "merge", str(bad))
        since = manyfest("publish", "--since", str(bad), str(plan))
        assert (merged.returncode, since.returncode) == (2, 2)
        [line] = merged.stderr.splitlines()
        assert line.startswith(f"{bad}:1: " if "results" not in text else f"{bad}: results[0]")
        assert since.stderr == f"--since {merged.stderr}"


def test_usage_errors_name_the_command(tmp_path: Path) -> None:
    proc = manyfest("report", "merge")
    assert proc.returncode == 2
    assert proc.stderr == ("missing REPORT... (usage: manyfest report merge [OPTIONS] "
                           "REPORT...); see `manyfest report merge --help`\n")
    proc = manyfest("report", "merge", "--nope", "x")
    assert (proc.returncode, proc.stderr) == (
        2, "unknown flag '--nope'; see `manyfest report merge --help`\n")


def test_help_lists_merge() -> None:
    proc = manyfest("report", "--help")
    assert proc.returncode == 0
    assert "Commands:\n  merge  Merge the reports of the shards of one plan" in proc.stdout
    proc = manyfest("report")  # no subcommand: the help, exit 2 (as the root)
    assert proc.returncode == 2
    assert "merge" in proc.stderr
    root = manyfest("--help").stdout
    assert "  report      Work on the reports of publish runs" in root


def test_merge_help_speaks_the_fields_words() -> None:
    """As tests/test_messages.py asks of every command's help: metavars, not Python's
    types; the usage line names REPORT...; an example block."""
    helped = manyfest("report", "merge", "--help", check=True).stdout
    assert helped.startswith("Usage: manyfest report merge [OPTIONS] REPORT...\n")
    for python in ("TEXT", "PATH", "<list", "list[", "[required]", "Arguments:"):
        assert python not in helped, python
    assert "-o, --output FILE " in helped
    assert "  Examples:\n    manyfest report merge -o report.jsonl report-1.jsonl" in helped


@pytest.mark.parametrize("argv", [("report", "--help"), ("report", "merge", "--help")])
def test_help_imports_no_heavy_module(tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, modules, stderr = _imports(tmp_path, *argv)
    assert code == 0, stderr
    assert _heavy(modules) == []
    assert "manyfest.ops.reports" not in modules


def test_merge_imports_no_network_module(tmp_path: Path) -> None:
    """A merge is local: no engine, transport, aiohttp or plan parser."""
    a = _write(tmp_path / "a.jsonl", _line("reg.example/a:1", ["1"]))
    code, modules, stderr = _imports(tmp_path, "report", "merge", "-o",
                                     str(tmp_path / "o.jsonl"), str(a))
    assert code == 0, stderr
    assert "manyfest.ops.reports" in modules
    assert _heavy(modules) == []

