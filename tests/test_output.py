"""Output conventions (issue 8): stdout carries data only, progress and logs go to stderr.

Through the CLI on the real registry: each command's stdout/stderr, ``publish --dry-run`` to
a file, the global options anywhere on the line (-D, -q, --progress, --log-format), debug
logs with secrets redacted (token-auth registry), JSON logs, NO_COLOR / FORCE_COLOR /
TERM=dumb, the terminal path through a pty. In process: the summary table, the plain status
line, plurals, the lifting of global options.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from manyfest.cli import output
from manyfest.cli.progress import (
    PublishProgress,
    list_line,
    plan_lines,
    summary_line,
    summary_table,
)
from manyfest.engine import ListResult
from manyfest.errors import ManyfestError, VerificationError
from manyfest.events import Finished, Phase, SourceDone, Started, Throttled
from manyfest.ops.publish import PublishReport
from manyfest.reference import parse
from manyfest.transport import RequestStats
from tests.helpers import manyfest, seed_walkthrough
from tests.quirk_proxy import QuirkProxy, too_many_requests
from tests.registry_server import RegistryServer
from tests.token_issuer import TokenIssuer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

ESC = "\x1b["
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
USER, PASSWORD = "outputuser", "s3cret-Passw0rd-for-output"


def _plan(path: Path, lists: dict[str, list[str]]) -> Path:
    """A manifest-tool plan: target -> its sources, one document each."""
    docs = []
    for target, sources in lists.items():
        docs.append(f"image: {target}\nmanifests:\n"
                    + "".join(f"  - image: {s}\n" for s in sources))
    path.write_text("---\n".join(docs))
    return path


@pytest.fixture
def sources(registry: RegistryServer, ns: str) -> list[str]:
    """The four walkthrough images of this test's namespace."""
    return seed_walkthrough(registry.host, ns)


# ---------------------------------------------------------------- stderr gone


@pytest.mark.parametrize("stderr_is", ["closed", "a pipe nobody reads"])
def test_publish_works_when_stderr_is_gone(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path, stderr_is: str
) -> None:
    """``2>&-`` or ``2>&1 | head -1``: the diagnostics are lost, never the work: every tag
    moves, ``--report`` and ``--json`` are written, the exit status is the run's."""
    target = f"{registry.host}/{ns}/gone:1"
    plan = _plan(tmp_path / "plan.yaml", {target: sources})
    report = tmp_path / "report.jsonl"
    argv = [sys.executable, "-m", "manyfest", "publish", "--json", "--report", str(report),
            str(plan)]
    if stderr_is == "closed":
        proc = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *argv],
                              capture_output=False, stdout=subprocess.PIPE, text=True,
                              check=False, timeout=120)
    else:
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line: every write is EPIPE
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=write, text=True,
                                  check=False, timeout=120)
        finally:
            os.close(write)
    assert proc.returncode == 0
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created"
    [line] = [json.loads(x) for x in report.read_text().splitlines()]
    assert line["digest"] == result["digest"]
    shown = manyfest("inspect", "--raw", target)
    assert shown.returncode == 0, shown.stderr
    assert hashlib.sha256(shown.stdout.encode()).hexdigest() == result["digest"][7:]


# ---------------------------------------------------------------- stdout is data


def test_dry_run_diff_goes_to_stdout(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    host = registry.host
    done, new, bad = f"{host}/{ns}/done:1", f"{host}/{ns}/new:1", f"{host}/{ns}/bad:1"
    _plan(tmp_path / "first.yaml", {done: sources})
    first = manyfest("publish", "--json", str(tmp_path / "first.yaml"))
    assert first.returncode == 0, first.stderr
    done_digest = json.loads(first.stdout)["results"][0]["digest"]
    plan = _plan(tmp_path / "plan.yaml", {
        done: sources, new: sources[:2], bad: [f"{host}/{ns}/missing:1"],
    })
    review = tmp_path / "review.txt"
    with review.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", "manyfest", "publish", "--dry-run",
                               str(plan)], stdout=out, stderr=subprocess.PIPE, text=True,
                              check=False, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = review.read_text().splitlines()
    heads = [line for line in lines if not line.startswith("  ")]
    assert heads[0] == f"unchanged {done} {done_digest}"
    assert heads[1].startswith(f"would create {new} sha256:")
    assert heads[2].startswith(f"would fail {bad}: ")
    assert "missing:1" in heads[2]
    actions = lines[lines.index(heads[1]) + 1: lines.index(heads[2])]
    assert actions
    assert all(a.startswith("  ") for a in actions)
    assert f"  put {new} -> {heads[1].split()[-1]} (new tag)" in actions
    # stderr: the lines of progress, the summary and the error; no diff.
    assert "would create" not in proc.stderr
    assert f"[3/3] would be created {new} " in proc.stderr or "would be created" in proc.stderr
    assert "would publish 3 lists: 1 created, 0 updated, 1 unchanged, 1 failed" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "1 of 3 lists would fail; see the per-list errors; nothing was written (--dry-run)")
    # the same run published: the digest the diff announced
    real = manyfest("publish", "--json", str(_plan(tmp_path / "ok.yaml", {new: sources[:2]})))
    assert json.loads(real.stdout)["results"][0]["digest"] == heads[1].split()[-1]


def test_dry_run_with_json_prints_json_only(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    plan = _plan(tmp_path / "plan.yaml", {f"{registry.host}/{ns}/app:1": sources})
    proc = manyfest("publish", "--dry-run", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # nothing but the JSON document
    assert report["results"][0]["status"] == "created"


def test_each_command_keeps_data_on_stdout(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    """docker's commands keep docker's stdout lines; everything else is data or nothing."""
    target = f"{registry.host}/{ns}/list:1"
    created = manyfest("create", target, *sources)
    assert (created.returncode, created.stdout, created.stderr) == (
        0, f"Created manifest list {target}\n", "")
    annotated = manyfest("annotate", target, sources[0], "--os", "linux", "--arch", "amd64")
    assert (annotated.returncode, annotated.stdout, annotated.stderr) == (0, "", "")
    local = manyfest("inspect", target)
    assert local.returncode == 0
    assert local.stderr == ""
    assert len(json.loads(local.stdout)["manifests"]) == 4
    pushed = manyfest("push", target)
    assert pushed.returncode == 0
    assert pushed.stderr == ""
    *refs, digest = pushed.stdout.splitlines()
    assert DIGEST.fullmatch(digest)
    assert len(refs) == 4
    assert all(r.startswith("Pushed ref ") for r in refs)
    remote = manyfest("inspect", target)
    assert remote.stderr == ""
    assert json.loads(remote.stdout)["manifests"]
    removed = manyfest("rm", target)
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, "", "")
    missing = manyfest("rm", target)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith(f"No such manifest: {target}")

    plan = _plan(tmp_path / "plan.yaml", {f"{registry.host}/{ns}/pub:1": sources})
    published = manyfest("publish", str(plan), "--progress", "plain")
    assert (published.returncode, published.stdout) == (0, "")
    assert f"[1/1] created {registry.host}/{ns}/pub:1 sha256:" in published.stderr
    as_json = manyfest("publish", "--json", str(plan))
    assert json.loads(as_json.stdout)["results"][0]["status"] == "unchanged"
    assert "[1/1] unchanged" in as_json.stderr


def test_quiet_leaves_data_and_errors(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    target = f"{registry.host}/{ns}/list:1"
    created = manyfest("-q", "create", target, *sources)
    assert (created.returncode, created.stdout, created.stderr) == (0, "", "")
    pushed = manyfest("push", target, "--quiet")
    assert pushed.returncode == 0
    assert pushed.stderr == ""
    assert DIGEST.fullmatch(pushed.stdout.strip())
    ok = _plan(tmp_path / "ok.yaml", {f"{registry.host}/{ns}/pub:1": sources})
    quiet = manyfest("publish", str(ok), "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    bad = _plan(tmp_path / "bad.yaml", {
        f"{registry.host}/{ns}/pub:1": sources,
        f"{registry.host}/{ns}/bad:1": [f"{registry.host}/{ns}/missing:1"],
    })
    failed = manyfest("publish", str(bad), "-q")
    assert failed.returncode == 3
    lines = failed.stderr.splitlines()
    assert len(lines) == 2, failed.stderr
    assert re.match(rf"\[\d/2\] failed {registry.host}/{ns}/bad:1: ", lines[0]), lines
    assert lines[1].startswith("1 of 2 lists failed; ")


# ---------------------------------------------------------------- global options


def test_global_options_anywhere(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    plan = _plan(tmp_path / "plan.yaml", {f"{registry.host}/{ns}/app:1": sources})
    debug = manyfest("publish", str(plan), "-D")
    assert debug.returncode == 0, debug.stderr
    exchanges = [line for line in debug.stderr.splitlines()
                 if line.startswith("manyfest.transport: ")]
    assert any(f"PUT http://{registry.host}/v2/{ns}/app/manifests/1 -> 201" in line
               for line in exchanges), debug.stderr
    answered = [line for line in exchanges if " -> " in line]
    assert answered
    assert all(re.search(r" -> \d{3}.* in \d+\.\d{3} s; sent \{.*\}; got \{",
                                      line) for line in answered)
    assert "manyfest.events: finished" in debug.stderr
    for argv in (["publish", "--progress=none", str(plan)],
                 ["publish", str(plan), "--progress", "none"],
                 ["--progress", "none", "publish", str(plan)]):
        proc = manyfest(*argv)
        assert proc.returncode == 0, proc.stderr
        # none: no progress, only the summary line
        assert proc.stderr.splitlines() == [proc.stderr.splitlines()[-1]]
        assert proc.stderr.startswith("published 1 list: 0 created, 0 updated, 1 unchanged")
    wrong = manyfest("publish", str(plan), "--progress", "fancy")
    assert wrong.returncode == 2
    assert wrong.stderr == ("--progress 'fancy': expected one of auto, tty, plain, none; see "
                            "`manyfest publish --help`\n")
    after = manyfest("inspect", f"{registry.host}/{ns}/app:1", "--", "-q")
    assert after.returncode == 2  # after `--`, -q is an argument: one reference too many


def test_progress_plain_lines(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    host = registry.host
    plan = _plan(tmp_path / "plan.yaml", {
        f"{host}/{ns}/a:1": sources, f"{host}/{ns}/b:1": sources[:2],
    })
    proc = manyfest("publish", "--verify", str(plan), "--progress", "plain")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "resolving 4 sources"
    assert lines[1] == "publishing 2 lists"
    finished = sorted(line.split()[2] for line in lines[2:4])
    assert finished == [f"{host}/{ns}/a:1", f"{host}/{ns}/b:1"]
    for line in lines[2:4]:
        assert re.fullmatch(r"\[[12]/2\] created \S+ sha256:[0-9a-f]{64} \(\d+ requests, "
                            r"\d+\.\d\d s, verified\)", line), line
    assert re.fullmatch(r"published 2 lists: 2 created, 0 updated, 0 unchanged, 0 failed; "
                        r"2 of 2 verified; \d+ requests, 0 retries, 0 throttled in "
                        r"\d+\.\d\d s", lines[4]), lines[4]
    assert len(lines) == 5
    assert ESC not in proc.stderr


def test_log_format_json(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    host = registry.host
    plan = _plan(tmp_path / "plan.yaml", {
        f"{host}/{ns}/a:1": sources, f"{host}/{ns}/bad:1": [f"{host}/{ns}/missing:1"],
    })
    proc = manyfest("publish", str(plan), "--log-format", "json", "-D")
    assert proc.returncode == 3
    records = [json.loads(line) for line in proc.stderr.splitlines()]  # every line parses
    for record in records:
        assert set(record) == {"time", "level", "event", "message", "fields"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    events = [r["event"] for r in records if r["level"] != "debug"]
    assert events.count("phase") == 2
    http = [r for r in records if r["event"] == "http"]
    assert http
    assert all(r["level"] == "debug" for r in http)
    assert {"method", "url", "status", "duration_s", "request_headers",
            "response_headers"} <= set(http[0]["fields"])
    lists = {r["fields"]["target"]: r for r in records if r["event"] == "list"}
    assert lists[f"{host}/{ns}/a:1"]["fields"]["status"] == "created"
    assert DIGEST.fullmatch(lists[f"{host}/{ns}/a:1"]["fields"]["digest"])
    assert lists[f"{host}/{ns}/bad:1"]["level"] == "error"
    [summary] = [r for r in records if r["event"] == "summary"]
    assert (summary["fields"]["created"], summary["fields"]["failed"]) == (1, 1)
    assert records[-1]["level"] == "error"
    assert records[-1]["message"].startswith("1 of 2 lists failed")
    usage = manyfest("inspect", "--log-format=json", "--nope", "x")
    assert usage.returncode == 2
    assert json.loads(usage.stderr)["level"] == "error"


def test_throttling_and_retries_are_shown(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    """A registry answering 429: the plain lines say so as it happens; -D logs each retry
    with its cause and wait; the summary counts them."""
    proxy = QuirkProxy(upstream=registry.host)
    proxy.before.append(too_many_requests(1, "1", match="/manifests/"))
    proxy.start()
    try:
        via = [s.replace(registry.host, proxy.host) for s in sources]
        plan = _plan(tmp_path / "plan.yaml", {f"{proxy.host}/{ns}/app:1": via})
        proc = manyfest("publish", str(plan), "-D")
    finally:
        proxy.stop()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(re.fullmatch(rf"throttled by {re.escape(proxy.host)}, \d+ in flight, waiting "
                            r"1\.0 s \(429 TOOMANYREQUESTS\)", line) for line in lines), lines
    retried = [line for line in lines if line.startswith("manyfest.events: retried ")]
    assert len(retried) == 1, proc.stderr
    assert re.search(r"429 TOOMANYREQUESTS; try 2 in \d+\.\d s$", retried[0]), retried
    assert re.search(r"; \d+ requests, 1 retry, 1 throttled in ", lines[-1]), lines[-1]


# ---------------------------------------------------------------- -D redaction


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    with TokenIssuer(tmp_path_factory.mktemp("issuer"), users={USER: PASSWORD}) as running:
        yield running


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, issuer: TokenIssuer
) -> Iterator[RegistryServer]:
    server = RegistryServer(workdir=tmp_path_factory.mktemp("token-registry"),
                            token=issuer.registry_config())
    server.start()
    yield server
    server.stop()


def test_debug_never_shows_secrets(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str, tmp_path: Path
) -> None:
    host = token_registry.host
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (Path(os.environ["DOCKER_CONFIG"]) / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": basic}}}))
    refs = seed_walkthrough(host, ns)  # with the credentials just written
    plan = _plan(tmp_path / "plan.yaml", {f"{host}/{ns}/app:1": refs})
    for fmt in ("text", "json"):
        mark = len(issuer.issued)
        proc = manyfest("publish", "-D", str(plan), "--log-format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert len(issuer.issued) > mark  # tokens were fetched and used
        for secret in (PASSWORD, basic, *issuer.issued):
            assert secret not in proc.stderr
        assert "Authorization: Bearer [redacted]" in proc.stderr or fmt == "json"
        assert f"{issuer.realm}?" in proc.stderr or fmt == "json"
        if fmt == "json":
            headers = [json.loads(line)["fields"].get("request_headers", {})
                       for line in proc.stderr.splitlines()]
            assert {"Authorization": "Bearer [redacted]"}.items() <= {
                k: v for h in headers for k, v in h.items()}.items()


# ---------------------------------------------------------------- colour


def test_colour_environment(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    plan = _plan(tmp_path / "plan.yaml", {f"{registry.host}/{ns}/app:1": sources})
    forced = manyfest("publish", str(plan), env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert forced.returncode == 0, forced.stderr
    assert f"{ESC}32mcreated{ESC}0m" in forced.stderr
    assert "\x1b[?25l" not in forced.stderr
    assert "\x1b[A" not in forced.stderr
    plain = manyfest("publish", str(plan), env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert plain.returncode == 0, plain.stderr
    assert "[1/1] unchanged " in plain.stderr
    assert ESC not in plain.stderr  # NO_COLOR wins
    # TERM=dumb: no cursor movement even when bars are asked for, plain lines
    dumb = manyfest("publish", str(plan), "--progress", "tty",
                    env={"TERM": "dumb", "FORCE_COLOR": "", "NO_COLOR": ""})
    assert dumb.returncode == 0, dumb.stderr
    assert "[1/1] unchanged " in dumb.stderr
    assert ESC not in dumb.stderr
    # NO_COLOR with bars forced: cursor movement, but no colour
    bars = manyfest("publish", str(plan), "--progress", "tty", env={"NO_COLOR": "1"})
    assert bars.returncode == 0, bars.stderr
    assert ESC in bars.stderr
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])m", bars.stderr), bars.stderr


def _pty_run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``manyfest ARGV`` with stderr on a pty (stdout a pipe): (exit code, its stderr),
    read until the process closes the pty."""
    master, slave = pty.openpty()
    full = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color", **env}
    proc = subprocess.Popen([sys.executable, "-m", "manyfest", *argv], stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, env=full)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as exc:  # EIO: every writer closed the pty
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.stdout is not None
    proc.stdout.read()
    proc.stdout.close()
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_terminal_progress_and_summary_table(
    registry: RegistryServer, ns: str, sources: list[str], tmp_path: Path
) -> None:
    host = registry.host
    plan = _plan(tmp_path / "plan.yaml", {
        f"{host}/{ns}/a:1": sources, f"{host}/{ns}/bad:1": [f"{host}/{ns}/missing:1"],
    })
    code, text = _pty_run(["publish", "--verify", str(plan)], {"NO_COLOR": "", "FORCE_COLOR": ""})
    assert code == 3, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert ESC in text  # bars drawn, colour on a terminal
    assert "resolved 5 sources" in plain  # the phases' bars, in the past tense at the end
    assert "published 2 lists" in plain
    # the per-list lines survive above the bars
    assert re.search(rf"\[\d/2\] created {re.escape(host)}/{ns}/a:1 sha256:[0-9a-f]{{64}}",
                     plain)
    assert re.search(rf"\[\d/2\] failed {re.escape(host)}/{ns}/bad:1: ", plain)
    table = plain[plain.index("manyfest publish (2 lists)"):]
    digest = re.search(rf"{re.escape(host)}/{ns}/a:1 (sha256:[0-9a-f]{{64}})", table)
    assert digest is not None, table
    assert re.search(r"created\s+│\s+1\s+│", table), table
    assert re.search(r"failed\s+│\s+1\s+│ \S+bad:1: ", table), table
    assert re.search(r"verified\s+│\s+1/1\s+│ every tag and child checked", table), table
    assert re.search(r"requests\s+│\s+\d+\s+│ 0 retries, 0 throttled answers", table), table
    assert "1 of 2 lists failed; " in table.splitlines()[-1]
    no_colour = _pty_run(["publish", str(plan), "--progress", "plain"], {"NO_COLOR": "1"})
    assert ESC not in no_colour[1]


# ---------------------------------------------------------------- in process


def _result(name: str, status: str, digest: str = "", **kw: object) -> ListResult:
    ref = parse(name)
    return ListResult(ref, [ref.tag or "latest"], digest=digest, status=status,  # type: ignore[arg-type]
                      **kw)  # type: ignore[arg-type]


D1, D2, D0 = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "0" * 64


def _report() -> PublishReport:
    return PublishReport([
        _result("reg.io/a:1", "created", D1, requests=1, verified=True, duration_s=0.5),
        _result("reg.io/b:1", "updated", D2, old_digest=D0, requests=3, verified=True),
        _result("reg.io/c:1", "unchanged", D0, requests=2),
        _result("reg.io/d:1", "failed", error=ManyfestError("reg.io/src:1: not found",
                                                             hint="check it")),
        _result("reg.io/e:1", "failed", D1, error=VerificationError("verify reg.io/e:1: "
                                                                    "points at nothing")),
    ], requests=1, retries=1, throttled=0, manifest_gets=3, manifest_heads=7, duration_s=75.25)


def test_summary_table_content() -> None:
    console = Console(record=True, width=200, color_system=None)
    console.print(summary_table(_report(), verify=True))
    text = console.export_text()
    rows = text.splitlines()
    assert rows[0].strip() == "manyfest publish (5 lists)"
    assert not any(re.fullmatch(r"[\s│┃|]*", r.strip("┏┓┗┛━┡┩┌┐└┘─╇")) and "│" in r
                   for r in rows)  # no empty header row
    assert re.search(rf"created\s+│\s+1 │ reg.io/a:1 {D1}", text)
    assert re.search(rf"updated\s+│\s+1 │ reg.io/b:1 {D0} -> {D2}", text)
    assert re.search(rf"unchanged\s+│\s+1 │ reg.io/c:1 {D0}", text)
    assert re.search(r"failed\s+│\s+2 │ reg.io/d:1: reg.io/src:1: not found; check it", text)
    assert "reg.io/e:1: verify reg.io/e:1: points at nothing" in text
    assert re.search(r"verified\s+│\s+2/3 │ 1 failed verification", text)
    assert re.search(r"requests\s+│\s+1 │ 1 retry, 0 throttled answers; manifest GETs 3, "
                     r"HEADs 7", text)
    assert re.search(r"time\s+│\s+1 min 15 s │ 75.2 s", text)
    # a short run: its seconds once, not "0 s | 0.07 s"
    short = _report()
    short.duration_s = 0.07
    console = Console(record=True, width=200, color_system=None)
    console.print(summary_table(short, verify=True))
    [row] = [r for r in console.export_text().splitlines() if "time" in r]
    assert re.fullmatch(r"\s*│?\s*time\s+│\s+0.07 s\s+│\s*│?", row), row


def test_summary_table_caps_long_status_rows() -> None:
    report = PublishReport([_result(f"reg.io/a:{i}", "created", D1) for i in range(25)])
    console = Console(record=True, width=200, color_system=None)
    console.print(summary_table(report))
    text = console.export_text()
    assert text.count(D1) == 10
    assert "... and 15 more (see the lines above)" in text


def test_plurals() -> None:
    one = PublishReport([_result("reg.io/a:1", "created", D1, requests=1)], requests=1,
                        retries=1, duration_s=1)
    assert summary_line(one) == ("published 1 list: 1 created, 0 updated, 0 unchanged, 0 "
                                 "failed; 1 request, 1 retry, 0 throttled in 1.00 s")
    assert list_line(one.results[0], 1, 1, dry_run=False)[0] == (
        f"[1/1] created reg.io/a:1 {D1} (1 request, 0.00 s)")
    assert output.plural(0, "list") == "0 lists"
    assert output.plural(2, "retry", "retries") == "2 retries"
    dry = PublishReport([_result("reg.io/a:1", "created", D1, actions=["mount x"])],
                        dry_run=True)
    assert summary_line(dry).startswith("would publish 1 list: 1 created")
    assert plan_lines(dry) == [f"would create reg.io/a:1 {D1}", "  mount x"]
    assert _report().interruption_line().startswith("3 of 5 lists published")
    single = PublishReport([_result("reg.io/a:1", "created", D1)], interrupted="SIGINT")
    assert single.interruption_line().startswith("1 of 1 list published")


def test_plain_status_line(capsys: pytest.CaptureFixture[str]) -> None:
    progress = PublishProgress(2, mode="plain", status_every=0)
    progress.counters = RequestStats(requests=7, retries=1)
    with progress:
        progress(Phase(name="resolve", total=2))
        progress(SourceDone(target="reg.io/s:1", digest=D1))
        progress(SourceDone(target="reg.io/s:2", digest=D2))
        progress(Phase(name="publish", total=2))
        progress(Started(target="reg.io/a:1"))
        progress(Started(target="reg.io/b:1"))
        progress(Throttled(registry="reg.io", limit=4, wait_s=2.0, reason="429"))
        progress(Finished(target="reg.io/a:1",
                          result=_result("reg.io/a:1", "created", D1, requests=3)))
        progress(Finished(target="reg.io/b:1",
                          result=_result("reg.io/b:1", "unchanged", D2, requests=1)))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "resolving 2 sources"
    assert re.fullmatch(r"resolving: 1/2 sources, \d+\.\d sources/s, ETA \S+ s; 7 requests, "
                        r"1 retry", lines[1]), lines[1]
    assert lines[2] == "publishing 2 lists"
    assert lines[3] == "throttled by reg.io, 4 in flight, waiting 2.0 s (429)"
    assert lines[4] == f"[1/2] created reg.io/a:1 {D1} (3 requests, 0.00 s)"
    assert re.fullmatch(r"publishing: 1/2 lists, \d+\.\d lists/s, ETA \S+ s; 7 requests, 1 "
                        r"retry; throttled by reg.io, 4 in flight, waiting 2.0 s \(429\); in "
                        r"flight: reg.io/b:1", lines[5]), lines[5]
    assert lines[6] == f"[2/2] unchanged reg.io/b:1 {D2} (1 request, 0.00 s)"
    assert len(lines) == 7


def test_lift_moves_global_options_in_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "options", output.Options())
    argv = ["publish", "plan.yaml", "-D", "--progress", "plain", "--log-format=json", "-q",
            "--", "-D"]
    assert output.lift(argv) == ["-D", "--progress", "plain", "--log-format=json", "-q",
                                 "publish", "plan.yaml", "--", "-D"]
    assert output.options == output.Options(debug=True, quiet=True, progress="plain",
                                            log_format="json")
