"""Messages in the user's words: ``--help`` of every command (metavars, summaries, examples,
exit codes), click's usage errors as one exact line, and counts with the right plural."""

from __future__ import annotations

import re

import pytest

from manyfest.cli.main import COMMANDS
from manyfest.words import plural
from tests.helpers import manyfest


@pytest.mark.parametrize("command", COMMANDS)
def test_help_speaks_the_fields_words(command: str) -> None:
    helped = manyfest(command, "--help", check=True).stdout
    for python in ("TEXT", "INTEGER", "FLOAT", "RANGE", "PATH", "<list", "list[", "[x>=",
                   "[x>", "}...", "{[", "[required]", "Arguments:"):
        assert python not in helped, (command, python)
    assert "  Example" in helped  # an example block, kept line by line
    examples = helped.split("  Example", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert examples
    assert all(line.startswith(("    manyfest ", "      ", "    eval ")) for line in examples)


def test_usage_lines_keep_dockers_arguments() -> None:
    usage = {c: manyfest(c, "--help", check=True).stdout.splitlines()[0] for c in COMMANDS}
    assert usage == {
        "inspect": "Usage: manyfest inspect [OPTIONS] [MANIFEST_LIST] MANIFEST",
        "create": "Usage: manyfest create [OPTIONS] MANIFEST_LIST MANIFEST [MANIFEST...]",
        "annotate": "Usage: manyfest annotate [OPTIONS] MANIFEST_LIST MANIFEST",
        "push": "Usage: manyfest push [OPTIONS] MANIFEST_LIST",
        "copy": "Usage: manyfest copy [OPTIONS] SRC DST...",
        "rm": "Usage: manyfest rm [OPTIONS] MANIFEST_LIST [MANIFEST_LIST...]",
        "publish": "Usage: manyfest publish [OPTIONS] [PLAN.yaml]",
        "report": "Usage: manyfest report [OPTIONS] COMMAND [ARGS]...",
        "login": "Usage: manyfest login [OPTIONS] [SERVER]",
        "logout": "Usage: manyfest logout [OPTIONS] [SERVER]",
        "completion": "Usage: manyfest completion [OPTIONS] SHELL",
    }


def test_metavars() -> None:
    publish = manyfest("publish", "--help", check=True).stdout
    for flag in ("--concurrency N ", "--lists-in-flight N ", "--retry-deadline SECONDS ",
                 "--report FILE ", "--template IMAGE ", "--target LIST ",
                 "--media-type oci|docker|auto ", "--attestations keep|drop ",
                 "--json-style docker|manifest-tool|compact", "--platform-check error|warn|off",
                 "--platform OS/ARCH[/VARIANT] "):
        assert flag in publish, flag
    annotate = manyfest("annotate", "--help", check=True).stdout
    for flag in ("--arch ARCH ", "--os OS ", "--os-version VERSION ", "--variant VARIANT ",
                 "--os-features FEATURE[,FEATURE...]", "--annotation KEY=VALUE "):
        assert flag in annotate, flag


def test_root_help_lists_whole_summaries_and_exit_codes() -> None:
    helped = manyfest("--help", check=True).stdout
    commands = helped.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^  (\w+) ", commands, re.M) == list(COMMANDS)
    assert "Print the shell completion script for bash, zsh or fish." in commands
    assert " ".join(helped.split("\n\n")[-1].split()) == (
        "Exit status: 0 success, 1 failure, 2 usage error, 3 publish finished with failed "
        "lists or copy with failed copies (the others were made), 130 interrupted (SIGINT), "
        "143 terminated (SIGTERM)."
    )


@pytest.mark.parametrize(("args", "line"), [
    (["publish", "--concurrency", "0", "p.yaml"],
     "--concurrency 0: expected a whole number of at least 1; see `manyfest publish --help`"),
    (["publish", "--concurrency", "many", "p.yaml"],
     "--concurrency 'many': expected a whole number of at least 1; see "
     "`manyfest publish --help`"),
    (["publish", "--lists-in-flight=2.5", "p.yaml"],
     "--lists-in-flight 2.5: expected a whole number of at least 1; see "
     "`manyfest publish --help`"),
    (["publish", "--retry-deadline", "0", "p.yaml"],
     "--retry-deadline 0: expected a number of at least 0.1; see `manyfest publish --help`"),
    (["create", "--media-type", "x", "a/b:1", "a/c:1"],
     "--media-type 'x': expected one of oci, docker, auto; see `manyfest create --help`"),
    (["create", "--attestations", "dorp", "a/b:1", "a/c:1"],
     "--attestations 'dorp': expected one of keep, drop (did you mean 'drop'?); see "
     "`manyfest create --help`"),
    (["annotate", "a/b:1"],
     "missing MANIFEST (usage: manyfest annotate [OPTIONS] MANIFEST_LIST MANIFEST); see "
     "`manyfest annotate --help`"),
    (["rm"],
     "missing MANIFEST_LIST (usage: manyfest rm [OPTIONS] MANIFEST_LIST [MANIFEST_LIST...]); "
     "see `manyfest rm --help`"),
    (["inspect"],
     "missing MANIFEST (usage: manyfest inspect [OPTIONS] [MANIFEST_LIST] MANIFEST); see "
     "`manyfest inspect --help`"),
    (["completion"],
     "missing SHELL (usage: manyfest completion [OPTIONS] SHELL); see "
     "`manyfest completion --help`"),
    (["create", "a/b:1"],
     '"create" requires at least 2 arguments (usage: manyfest create [OPTIONS] MANIFEST_LIST '
     "MANIFEST [MANIFEST...]); see `manyfest create --help`"),
    (["push", "a/b:1", "a/c:1", "a/d:1"],
     "unexpected extra arguments 'a/c:1', 'a/d:1' (usage: manyfest push [OPTIONS] "
     "MANIFEST_LIST); see `manyfest push --help`"),
    (["push", "--nope", "a/b:1"],
     "unknown flag '--nope' (did you mean '--purge'?); see `manyfest push --help`"),
    (["pussh", "a/b:1"], "unknown command 'pussh' (did you mean 'push'?); see `manyfest --help`"),
    (["publish", "--report"], "--report needs a value (FILE); see `manyfest publish --help`"),
    (["inspect", "-f"],
     "--format needs a value (json|table|TEMPLATE); see `manyfest inspect --help`"),
    (["publish", "--json=yes", "p.yaml"], "--json takes no value; see `manyfest publish --help`"),
])
def test_usage_errors_name_the_flag_and_what_was_expected(args: list[str], line: str) -> None:
    proc = manyfest(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")


def test_plural() -> None:
    assert [plural(n, "list") for n in (0, 1, 2)] == ["0 lists", "1 list", "2 lists"]
    assert [plural(n, "entry") for n in (1, 3)] == ["1 entry", "3 entries"]
    assert plural(2, "OCI child") == "2 OCI children"
    assert plural(2, "tag PUT") == "2 tag PUTs"
    assert plural(2, "index", "indexes") == "2 indexes"
