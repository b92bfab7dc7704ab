"""The conventions every command and job script follows: -h, --version, completion, shared options."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.local

VERBOSE = {"train", "federate", "predict", "evaluate", "compare", "bench"}
SCRIPTS = {"jobs.spark_train": "spark", "jobs.dask_train": "dask", "jobs.ray_train": "ray"}


def _root() -> click.Group:
    from typer.main import get_command

    from jobs.cli import app

    root = get_command(app)
    assert isinstance(root, click.Group)
    return root


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, child in command.commands.items():
            yield from _walk(child, (*path, name))


def _options(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def _help_texts(command: click.Command) -> Iterator[str]:
    yield command.help or ""
    yield command.short_help or ""
    for param in command.params:
        yield getattr(param, "help", None) or ""


COMMANDS = list(_walk(_root()))
LEAVES = [(path, c) for path, c in COMMANDS if not isinstance(c, click.Group)]


def test_version_prints_the_package_version(cli) -> None:
    from pipelines import __version__

    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"scaleclf {__version__}"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{__version__}"' in pyproject


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "scaleclf" for p, _ in COMMANDS])
def test_every_command_and_group_has_short_and_long_help(cli, path: tuple[str, ...], command, flag: str) -> None:
    result = cli(*path, flag)
    assert result.code == 0, result.err
    assert "Usage: scaleclf" in result.out


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_takes_quiet_and_debug(path: tuple[str, ...], command: click.Command) -> None:
    options = _options(command)
    assert {"--quiet", "-q", "--debug"} <= options, path
    assert ("--verbose" in options) == (path[0] in VERBOSE), path


def test_no_help_text_shows_restructuredtext_backticks() -> None:
    commands = [c for _, c in COMMANDS] + [importlib.import_module(m).command() for m in SCRIPTS]
    found = [text for c in commands for text in _help_texts(c) if "``" in text]
    assert found == []


def test_an_unknown_engine_is_refused_naming_the_choices(cli) -> None:
    result = cli("train", REPO / "conf" / "quickstart.yaml", "--engine", "flink")
    assert result.code == 2
    assert result.err.strip() == (
        "error: Invalid value for '--engine': 'flink' is not one of 'local', 'spark', 'dask', 'ray', 'auto'."
    )


def test_show_completion_prints_a_bash_completion_script(cli) -> None:
    result = cli("--show-completion", "bash")
    assert result.code == 0
    assert "_scaleclf_completion()" in result.out and "complete " in result.out


def test_install_completion_writes_the_script_for_the_shell(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("scaleclf")
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    done = subprocess.run([exe, "--install-completion", "bash"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "scaleclf.sh"
    assert "_scaleclf_completion" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
    # The installed script really completes: the shell's request lists the commands.
    asked = {**env, "_SCALECLF_COMPLETE": "complete_bash", "COMP_WORDS": "scaleclf tr", "COMP_CWORD": "1"}
    completed = subprocess.run([exe], env=asked, capture_output=True, text=True, timeout=60)
    assert "train" in completed.stdout.split()


@pytest.mark.parametrize("module", list(SCRIPTS))
def test_job_scripts_are_scaleclf_train_with_the_engine_fixed(module: str) -> None:
    from jobs.commands.train import train_command

    script = importlib.import_module(module).command()
    expected = _options(train_command()) - {"--engine"}
    if module == "jobs.spark_train":  # spark-submit's --master decides where it runs
        expected -= {"--address"}
    assert _options(script) == expected
    assert {"--set", "--out", "--quiet", "--debug", "--verbose"} <= _options(script)
    assert script.context_settings["help_option_names"] == ["-h", "--help"]
    config = next(p for p in script.params if p.name == "config")
    assert config.nargs == (-1 if module == "jobs.spark_train" else 1)


@pytest.mark.parametrize("module", list(SCRIPTS))
def test_job_script_help_runs_as_users_run_it(module: str) -> None:
    args = [sys.executable, "-m", module, "--help"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--set" in done.stdout and "--out" in done.stdout and "--quiet" in done.stdout


def test_job_scripts_train_on_their_engine_and_refuse_bad_options(tmp_path: Path, capsys) -> None:
    from jobs import dask_train

    # A bad option is a one-line usage error with exit 2, as for scaleclf train.
    with pytest.raises(SystemExit) as exc:
        dask_train.main([str(REPO / "conf" / "dask_higgs.yaml"), "--engine", "local"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == "error: No such option '--engine'."
    # The old positional ADDRESS still reaches engine.address (refused before anything starts).
    with pytest.raises(SystemExit) as exc:
        dask_train.main(
            [
                str(REPO / "conf" / "dask_higgs.yaml"),
                "tcp://127.0.0.1:1",
                "--out",
                str(tmp_path),
                "--set",
                "engine.options.timeout=2",
            ]
        )
    assert exc.value.code == 4
    assert "tcp://127.0.0.1:1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
