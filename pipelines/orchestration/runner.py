"""``scaleclf pipeline run | status | ui``: a persistent Dagster instance under the output directory.

A run observes the source assets (their content hashes), asks Dagster which assets are stale or
missing, and materialises those and everything downstream of them in-process; the rest is
reported up to date. A run that was killed leaves its completed stages materialised, so the next
run recomputes only what failed or never ran and what depends on it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.errors import ArtifactError, ConfigError, DataError, EngineError, ScaleclfError
from pipelines.orchestration.spec import PipelineSpec, build_pipeline
from pipelines.progress import Progress
from pipelines.spec import read_yaml

SPEC_FILE = "pipeline.yaml"
DAGSTER_DIR = ".dagster"
# Dagster's instance settings: no usage reports leave the machine.
INSTANCE_YAML = "telemetry:\n  enabled: false\n"
ERRORS = {cls.__name__: cls for cls in (ConfigError, DataError, EngineError, ArtifactError)}


def instance_for(out: Path) -> Any:
    """Return the persistent Dagster instance of a pipeline directory (created on first use)."""
    import dagster as dg

    home = (out / DAGSTER_DIR).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").is_file():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(home))


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the pipeline directory's lock, so that two runs never write into it at once."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"--out: another pipeline run is using {out}") from None
        yield


@contextmanager
def quiet_dagster() -> Iterator[None]:
    """Keep Dagster's preview and beta warnings off the terminal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"dagster.*")
        warnings.filterwarnings("ignore", message=r".*(beta|preview|superseded|deprecated).*")
        yield


def load_saved(out: Path) -> PipelineSpec:
    """Return the resolved pipeline spec saved in a pipeline directory."""
    path = out / SPEC_FILE
    if not path.is_file():
        raise ArtifactError(f"{out} is not a pipeline directory (no {SPEC_FILE})")
    return build_pipeline(read_yaml(path))


def close_interrupted(instance: Any, progress: Progress) -> None:
    """Mark runs a kill left "started" as failed; their completed stages stay materialised."""
    from dagster import DagsterRunStatus, RunsFilter

    unfinished = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]
    for run in instance.get_runs(filters=RunsFilter(statuses=unfinished)):
        instance.report_run_failed(run)
        progress.warn(f"run {run.run_id[:8]} was interrupted; rerunning what it did not finish")


def run_pipeline(spec: PipelineSpec, quiet: bool = False) -> dict[str, str]:
    """Materialise the stale and missing stages of a pipeline; return each stage's outcome."""
    from pipelines.orchestration.assets import PIPELINE_JOB, build_assets, build_definitions, source_versions
    from pipelines.orchestration.staleness import FRESH, QUIET, asset_states, downstream, record_source_versions

    out = spec.out_dir()
    progress = Progress(quiet=quiet)
    with locked(out), quiet_dagster():
        (out / SPEC_FILE).write_text(spec.to_yaml())
        instance = instance_for(out)
        close_interrupted(instance, progress)
        assets = build_assets(spec, out.resolve(), quiet)
        record_source_versions(instance, source_versions(spec))
        states = asset_states(assets, instance)
        todo = downstream(assets, {s.key for s in states if s.status != FRESH})
        outcome = {}
        for s in states:
            if s.key not in todo:
                progress.note(f"{s.key.to_user_string()}: up to date")
                outcome[s.key.to_user_string()] = "up to date"
        if not todo:
            progress.note(f"every stage is up to date ({out})")
            return outcome
        # A run of the definitions' own job (not an ephemeral one), so the UI can re-execute it.
        job = build_definitions(spec, out.resolve(), quiet).resolve_job_def(PIPELINE_JOB)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=sorted(todo, key=lambda k: k.to_user_string()),
            run_config=QUIET,
            raise_on_error=False,
            tags={"scaleclf/pipeline": spec.name},
        )
        for event in result.get_asset_materialization_events():
            if event.asset_key is not None:
                outcome[event.asset_key.to_user_string()] = "materialized"
        if not result.success:
            raise stage_error(result)
    return outcome


def stage_error(result: Any) -> ScaleclfError:
    """Return the first failed stage's error as a one-line scaleclf error with its exit code."""
    failures = result.get_step_failure_events()
    if not failures:
        return ScaleclfError("pipeline run failed before any stage ran")
    event = failures[0]
    stage = event.step_key.replace("__", "/")
    data = event.step_failure_data
    user = data.user_failure_data
    if user is not None and "exit_code" in user.metadata:
        cls = ERRORS.get(str(user.metadata["error"].value), ScaleclfError)
        err = cls(f"stage {stage} failed: {user.description}")
        err.exit_code = int(user.metadata["exit_code"].value)
        return err
    error = data.error
    while error is not None and error.cls_name not in ERRORS and error.cause is not None:
        error = error.cause
    name = error.cls_name if error is not None else "Exception"
    message = re.sub(rf"^[\w.]*{name}: ", "", " ".join((error.message if error is not None else "").split()))
    return ERRORS.get(name, ScaleclfError)(f"stage {stage} failed after retries: {message}")


def pipeline_status(out: Path) -> list[dict[str, Any]]:
    """Return each stage's status, last materialisation and summary, without running anything."""
    from pipelines.orchestration.assets import build_assets
    from pipelines.orchestration.staleness import asset_states

    spec = load_saved(out)
    with quiet_dagster():
        instance = instance_for(out)
        assets = build_assets(spec, out.resolve(), quiet=True)
        rows = []
        for state in asset_states(assets, instance):
            event = instance.get_latest_materialization_event(state.key)
            meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
            summary = meta.get("summary")
            rows.append(
                {
                    "stage": state.key.to_user_string(),
                    "status": state.status,
                    "materialized": event.timestamp if event else None,
                    "summary": summary.value if summary is not None else "",
                    "causes": list(state.causes),
                }
            )
    return rows


def serve_ui(out: Path, port: int, host: str = "127.0.0.1") -> int:
    """Run dagster-webserver on the pipeline's instance and definitions until interrupted; return its exit code."""
    load_saved(out)
    if shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)) is None:
        raise ConfigError("dagster-webserver is not installed (pip install 'scaleclf[orchestration]')")
    instance_for(out)
    env = {
        **os.environ,
        "DAGSTER_HOME": str((out / DAGSTER_DIR).resolve()),
        "SCALECLF_PIPELINE_DIR": str(out.resolve()),
    }
    webserver = str(Path(sys.executable).parent / "dagster-webserver")
    cmd = [webserver, "-h", host, "-p", str(port), "-m", "pipelines.orchestration.definitions"]
    proc = subprocess.Popen(cmd, env=env)
    # A SIGTERM to this command must stop the webserver too, not leave it listening.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
