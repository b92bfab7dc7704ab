"""The docs stay true: commands shown parse, the spec reference equals the schema, the matrix is generated."""

from __future__ import annotations

import importlib
import itertools
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.local

PAGES = sorted([REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").rglob("*.md")])
MATRIX = re.compile(r"<!-- support-matrix:start -->\n(.*?)<!-- support-matrix:end -->", re.S)
# What may precede a command on a doc line: environment settings, the bench lock, a timer.
EAGER = {"--version", "--install-completion", "--show-completion"}
SHELL_OPERATORS = {">", ">>", "2>", "|", "&&", ";"}
PREFIX = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+|flock\s+\S+\s+|/usr/bin/time(?:\s+-v)?\s+)+")


def shown_commands() -> Iterator[tuple[str, str]]:
    """Yield (page:line, command) for every command line of every fenced code block of the docs."""
    for page in PAGES:
        in_block, pending, start = False, "", 0
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            text = (pending + " " + line.strip()) if pending else line.strip()
            start = start if pending else number
            if text.endswith("\\"):
                pending = text[:-1].strip()
                continue
            pending = ""
            text = PREFIX.sub("", text.split(" #")[0].strip())
            text = text.split(" -- ", 1)[1] if " -- python -m jobs." in text else text  # ray job submit ... -- CMD
            first = text.split(" ", 1)[0]
            script = first in ("scaleclf", "make") or (first.startswith("infra/") and not first.endswith("/"))
            if script or text.startswith(("python jobs/", "python -m jobs.")):
                yield f"{page.relative_to(REPO)}:{start}", text


COMMANDS = list(shown_commands())


def _root() -> click.Command:
    from typer.main import get_command

    from jobs.cli import app

    return get_command(app)


def _entry_point(argv: list[str]) -> tuple[click.Command, list[str]]:
    """Return the click command a doc line runs and the arguments it gives that command."""
    if argv[0] == "python":  # python jobs/dask_train.py ARGS, python -m jobs.ray_train ARGS
        module = argv[2] if argv[1] == "-m" else "jobs." + Path(argv[1]).stem
        return importlib.import_module(module).command(), argv[3:] if argv[1] == "-m" else argv[2:]
    if argv[0] == "infra/spark/submit.sh":  # spark-submit jobs/spark_train.py ARGS
        args = argv[1:]  # spark-submit's options (each with its value) come before CONFIG
        while args and args[0].startswith("--"):
            args = args[1:] if args[0] in ("--verbose", "--supervise") or "=" in args[0] else args[2:]
        return importlib.import_module("jobs.spark_train").command(), args
    return _root(), argv[1:]


def _parse(command: click.Command, args: list[str], name: str, parent: click.Context | None = None) -> None:
    """Parse ``args`` as the command line would, descending into groups; -h/--help must exit 0."""
    try:
        ctx = command.make_context(name, list(args), parent=parent)
    except click.exceptions.Exit as exc:
        assert exc.exit_code == 0
        return
    rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    if isinstance(command, click.Group) and rest:
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        assert sub is not None and sub_name is not None
        _parse(sub, ["--help"], sub_name, ctx)
        _parse(sub, sub_args, sub_name, ctx)


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_command_shown_in_the_docs_is_valid(where: str, line: str) -> None:
    argv = list(itertools.takewhile(lambda word: word not in SHELL_OPERATORS, shlex.split(line)))
    if argv[0] == "make":
        targets = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
        wanted = [a for a in argv[1:] if "=" not in a]
        assert wanted and set(wanted) <= targets, f"{where}: make {' '.join(wanted)}: no such target"
        return
    if argv[0].startswith("infra/") and argv[0] != "infra/spark/submit.sh":
        script = REPO / argv[0]
        assert script.is_file() and os.access(script, os.X_OK), f"{where}: {argv[0]} is not an executable script"
        for word in argv[1:2]:  # a subcommand such as start / stop must be one the script handles
            # (a count or a simulated host such as 4 or h1 is an argument, not a subcommand)
            if not word.startswith("-") and "/" not in word and "." not in word and not re.fullmatch(r"h?\d+", word):
                assert re.search(rf"\b{word}\)", script.read_text()), f"{where}: {argv[0]} has no {word!r}"
        return
    command, args = _entry_point(argv)
    assert command.main(args=["--help"], prog_name=argv[0], standalone_mode=False) in (None, 0)
    eager = EAGER & set(args)
    if eager:  # parsing would run them (print, or install into the shell's rc file): check they exist
        assert eager <= {o for p in command.params for o in p.opts}, f"{where}: unknown {eager}"
        return
    # Parsing the shown arguments checks every option exists, choices are valid and nothing is missing.
    _parse(command, args, argv[0])


def test_the_readme_support_matrix_is_what_scaleclf_models_prints() -> None:
    from jobs.commands.models import support_matrix

    found = MATRIX.search((REPO / "README.md").read_text())
    assert found, "README.md lacks the support-matrix markers"
    assert found.group(1).strip() == support_matrix().strip(), "run: scaleclf models --matrix, paste into README"


def test_the_matrix_covers_every_model_and_engine_with_reasons_for_refusals(cli) -> None:
    from federated.models import FEDERATED_MODELS
    from federated.support import IMPLEMENTATIONS
    from pipelines.models.catalog import CATALOG

    assert set(IMPLEMENTATIONS) == set(FEDERATED_MODELS)
    result = cli("models", "--matrix")
    assert result.code == 0
    rows = [line for line in result.out.splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip(" `") for r in rows] == list(CATALOG)
    assert result.out.splitlines()[0] == "| model | local | spark | dask | ray | federated |"
    mlp = next(r for r in rows if r.startswith("| `mlp`")).split("|")
    note = re.search(r"refused \((\d)\)", mlp[4])
    assert note, "Dask refuses mlp"
    assert re.search(rf"^\({note.group(1)}\) no data-parallel MLP", result.out, re.M)


def _schema_keys() -> set[str]:
    from pipelines.spec import json_schema

    schema = json_schema()
    defs = schema.get("$defs", {})

    def resolve(node: dict) -> dict:
        refs = [node] if "$ref" in node else [a for a in node.get("anyOf", []) if "$ref" in a]
        return defs[refs[0]["$ref"].split("/")[-1]] if refs else node

    def leaves(node: dict, prefix: str) -> Iterator[str]:
        props = resolve(node).get("properties")
        if not props:
            yield prefix
            return
        for key, child in props.items():
            yield from leaves(child, f"{prefix}.{key}" if prefix else key)

    return set(leaves(schema, ""))


def _documented_keys() -> set[str]:
    text = (REPO / "docs" / "spec.md").read_text().split("## Reference", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            keys |= {k.removesuffix(".<param>") for k in re.findall(r"`([a-z_.<>]+)`", first_cell)}
    return keys


def test_the_spec_reference_documents_exactly_the_schema_keys() -> None:
    schema, documented = _schema_keys(), _documented_keys()
    assert len(schema) > 60
    assert sorted(schema - documented) == [], "schema keys missing from docs/spec.md's reference"
    assert sorted(documented - schema) == [], "docs/spec.md documents keys the schema does not have"
