"""Job spec: YAML loading, typed --set overrides, validation messages and the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.errors import ConfigError
from pipelines.spec import apply_overrides, build_spec, json_schema, load_spec, load_yaml, parse_override

pytestmark = pytest.mark.local
CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_validates(path: Path) -> None:
    # Validation never starts an engine, so engine and federated specs are checked here too.
    spec = load_spec(path)
    assert spec.model.name
    assert build_spec(load_yaml(spec.to_yaml())) == spec


def test_overrides_are_typed() -> None:
    assert parse_override("model.params.C=0.5") == (["model", "params", "C"], 0.5)
    assert parse_override("output.mlflow=true")[1] is True
    assert parse_override("model.params.hidden_layer_sizes=[32, 16]")[1] == [32, 16]
    assert parse_override("data.positive_label=yes")[1] == "yes"
    assert parse_override("data.test_source=null")[1] is None


def test_overrides_create_nested_keys_and_refuse_to_descend_into_values() -> None:
    raw = apply_overrides({"model": {"name": "mlp"}}, ["model.params.alpha=0.01"])
    assert raw["model"]["params"] == {"alpha": 0.01}
    with pytest.raises(ConfigError, match=r"model.name is a value"):
        apply_overrides(raw, ["model.name.x=1"])


def test_engine_option_overrides_spec(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "x.parquet"}, "model": {"name": "gbt"}}))
    with pytest.raises(ConfigError, match=r"engine.name: 'flink' is not allowed"):
        load_spec(path, engine="flink")


def test_params_are_resolved_against_the_catalog() -> None:
    from pipelines.models.catalog import get_model

    params = get_model("mlp").resolve_params({"hidden_layer_sizes": 8, "max_iter": 3.0})
    assert params["hidden_layer_sizes"] == [8] and params["max_iter"] == 3
    with pytest.raises(ConfigError, match=r"model.params.hidden_layer_sizes: expected int_list"):
        get_model("mlp").resolve_params({"hidden_layer_sizes": [0]})


def test_schema_lists_the_contract_keys() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    for key in ("test_source", "positive_label", "class_weight", "calibration", "address", "workers"):
        assert key in text
    assert set(schema["required"]) == {"data", "model"}


def test_schema_command_prints_json(cli) -> None:
    result = cli("schema")
    assert result.code == 0
    assert json.loads(result.out)["title"] == "scaleclf job spec"
