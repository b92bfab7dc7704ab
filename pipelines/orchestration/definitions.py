"""The Dagster code location of a pipeline: ``dagster dev -m pipelines.orchestration.definitions``.

Which pipeline is read from the environment: ``SCALECLF_PIPELINE_DIR`` (a directory written by
``scaleclf pipeline run``; what ``scaleclf pipeline ui`` sets), or ``SCALECLF_PIPELINE`` (a
pipeline YAML file, with ``SCALECLF_PIPELINE_OUT`` as the output directory if given).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pipelines.errors import ConfigError
from pipelines.orchestration.assets import build_definitions
from pipelines.orchestration.runner import load_saved
from pipelines.orchestration.spec import load_pipeline


def definitions_from_env() -> dg.Definitions:
    """Return the Definitions of the pipeline named by the environment."""
    directory = os.environ.get("SCALECLF_PIPELINE_DIR")
    if directory:
        return build_definitions(load_saved(Path(directory)), Path(directory).resolve())
    path = os.environ.get("SCALECLF_PIPELINE")
    if not path:
        raise ConfigError("set SCALECLF_PIPELINE (a pipeline YAML) or SCALECLF_PIPELINE_DIR (a pipeline directory)")
    out = os.environ.get("SCALECLF_PIPELINE_OUT")
    spec = load_pipeline(path, out=Path(out) if out else None)
    return build_definitions(spec, spec.out_dir().resolve())


defs = definitions_from_env()
