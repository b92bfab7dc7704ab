"""``scaleclf schema``: print the JSON Schema of the job spec."""

from __future__ import annotations

import json

from jobs.commands import DebugOption, QuietOption


def schema(quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """Print the JSON Schema of the job spec."""
    from pipelines.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
