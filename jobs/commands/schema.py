"""``scaleclf schema``: print the JSON Schema of the job spec."""

from __future__ import annotations

import json


def schema() -> None:
    """Print the JSON Schema of the job spec."""
    from pipelines.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
