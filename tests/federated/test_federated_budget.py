"""The budget holds whatever happens (dropouts, failed rounds, missing clients); the server is blind under SecAgg+."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from dp_accounting import dp_event as ev
from dp_accounting.rdp import RdpAccountant

from federated.budget import RoundGuard
from federated.server_app import History
from pipelines.errors import EngineError
from pipelines.spec import FederatedSpec

REPO = Path(__file__).resolve().parents[2]


def private_spec(tmp_path: Path, fail_clients: list[int], **changes: Any) -> Path:
    """Return conf/federated_private.yaml shrunk for tests, with clients failing in every round."""
    raw = yaml.safe_load((REPO / "conf" / "federated_private.yaml").read_text())
    raw["data"]["rows"] = 4_000
    raw["federated"]["centralized_baseline"] = False
    raw["federated"]["fail_clients"] = fail_clients
    raw["federated"]["fail_rounds"] = list(range(1, raw["federated"]["rounds"] + 1))
    raw["output"] = {"dir": str(tmp_path / "runs"), "report": False}
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def rdp_epsilon(multipliers: list[float], delta: float = 1e-5) -> float:
    acc = RdpAccountant()
    acc.compose(ev.ComposedDpEvent([ev.GaussianDpEvent(z) for z in multipliers]))
    return float(acc.get_epsilon(delta))


# --- dropouts under distributed DP ------------------------------------------------------------


def test_two_clients_failing_every_round_stop_training_before_the_budget(tmp_path: Path, cli) -> None:
    # 8 of 10 clients answer each round: noise z sqrt(8/10); 8 such rounds would spend 8.079 > 8.
    result = cli("federate", private_spec(tmp_path, [0, 1]), "--quiet")
    assert result.code == 0, result.err
    run = Path(result.last_line)
    privacy = json.loads((run / "privacy.json").read_text())
    rounds = json.loads((run / "history.json").read_text())["rounds"][1:]
    z = 2.0 * math.sqrt(8 / 10)
    assert privacy["replies_per_round"] == [8] * 7 and len(rounds) == 7
    assert privacy["epsilon"] == pytest.approx(rdp_epsilon([z] * 7)) and privacy["epsilon"] <= 8.0
    assert rdp_epsilon([z] * 8) > 8.0  # the round that did not run
    assert privacy["within_budget"] is True and privacy["stopped_by_budget"] is True
    # epsilon after every round, from the replies that round actually summed
    assert [r["epsilon"]["rdp"] for r in rounds] == pytest.approx([rdp_epsilon([z] * k) for k in range(1, 8)], abs=1e-5)
    headline = json.loads((run / "metrics.json").read_text())["federated"]["privacy"]
    assert headline["epsilon"] == pytest.approx(privacy["epsilon"]) and headline["within_budget"] is True
    assert headline["delta"] == 1e-5 and headline["target_epsilon"] == 8.0


def test_three_clients_failing_every_round_fail_the_rounds_and_stop_the_run(tmp_path: Path, cli) -> None:
    # 7 answers are fewer than min_train_clients 8: SecAgg+ does not unmask the round, which fails;
    # the third failed round is one more than max_failed_rounds 2 allows.
    result = cli("federate", private_spec(tmp_path, [2, 5, 7]), "--quiet")
    assert result.code == 4, result.err
    assert result.err.strip().splitlines()[-1] == (
        "error: federated.max_failed_rounds: 3 rounds (1, 2, 3) aggregated fewer than min_train_clients 8 clients"
        " (limit 2); the run stopped after round 3"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_round_whose_fewest_answers_could_cross_the_budget_does_not_run() -> None:
    fed = FederatedSpec.model_validate(
        {
            "clients": 10,
            "rounds": 8,
            "min_train_clients": 5,
            "privacy": {
                "dp": "distributed",
                "noise_multiplier": 2.0,
                "clipping_norm": 0.5,
                "target_epsilon": 8.0,
                "secure_aggregation": {"enabled": True, "num_shares": 5, "reconstruction_threshold": 3},
            },
        }
    )
    from federated.privacy import plan_privacy

    plan = plan_privacy(fed, [])
    assert plan.rounds == 8  # planned assuming every client answers: 7.08
    # after 4 full rounds, a fifth with only 5 answers (noise z sqrt(1/2)) is what the guard checks
    worst = rdp_epsilon([2.0] * 4 + [2.0 * math.sqrt(0.5)])
    assert plan.epsilon_worst_next([10] * 4) == pytest.approx(worst)


def test_an_impossible_budget_is_refused_before_any_data_is_read(tmp_path: Path, cli) -> None:
    privacy = {"dp": "central", "noise_multiplier": 0.3, "target_epsilon": 1.0}
    spec = private_spec(tmp_path, [], **{"federated.privacy": privacy, "data.source": str(tmp_path / "absent.csv")})
    result = cli("federate", spec)
    assert result.code == 2, result.err
    assert result.err.startswith("error: config error: federated.privacy.target_epsilon: one round already spends")


def test_a_reconstruction_threshold_at_half_the_shares_is_refused(tmp_path: Path, cli) -> None:
    secagg = {"enabled": True, "num_shares": 5, "reconstruction_threshold": 2}
    privacy = {"dp": "distributed", "noise_multiplier": 2.0, "secure_aggregation": secagg}
    result = cli("federate", private_spec(tmp_path, [], **{"federated.privacy": privacy}))
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert result.err.startswith(
        "error: config error: federated.privacy.secure_aggregation.reconstruction_threshold: 2 is at most half"
    )


class Nodes:
    """A grid with a fixed set of connected nodes."""

    def __init__(self, n: int) -> None:
        self.n = n

    def get_node_ids(self) -> list[int]:
        return list(range(self.n))


def test_the_first_round_waits_for_every_client_or_stops_with_one_line() -> None:
    from types import SimpleNamespace

    fed = FederatedSpec.model_validate({"clients": 10, "wait_clients_s": 0.3})
    job = SimpleNamespace(fed=fed, privacy=SimpleNamespace(), progress=None)
    guard = RoundGuard(job, History())  # type: ignore[arg-type]
    guard.wait_for_clients(Nodes(10))
    with pytest.raises(EngineError) as err:
        guard.wait_for_clients(Nodes(2))
    assert str(err.value) == (
        "federated.clients: only 2 of 10 client nodes connected within 0.3 s (8 missing); start them or lower"
        " federated.clients (federated.wait_clients_s sets the wait)"
    )


class InMemoryGrid(Nodes):
    """Named like Flower's simulation grid, whose nodes are all registered as the simulation starts."""


def test_a_simulation_short_of_clients_stops_within_seconds() -> None:
    """Flower's default federation simulates 2 SuperNodes; a spec for 10 stops at once, not after the wait."""
    import time
    from types import SimpleNamespace

    fed = FederatedSpec.model_validate({"clients": 10, "wait_clients_s": 60})
    guard = RoundGuard(SimpleNamespace(fed=fed, privacy=SimpleNamespace(), progress=None), History())  # type: ignore[arg-type]
    start = time.monotonic()
    with pytest.raises(EngineError) as err:
        guard.wait_for_clients(InMemoryGrid(2))
    assert time.monotonic() - start < 3
    assert str(err.value) == (
        "federated.clients: only 2 of 10 client nodes connected within 1 s (a simulation of 2 nodes) (8 missing);"
        " start them or lower federated.clients"
    )


def test_privacy_json_states_the_threat_model_and_the_counts() -> None:
    from federated.privacy import plan_privacy
    from pipelines.spec import load_spec

    spec = load_spec(REPO / "conf" / "federated_private.yaml", [])
    assert spec.federated is not None
    plan = plan_privacy(spec.federated, [400] * 10)
    out = plan.to_json(8, [10] * 8)
    assert out["neighbouring"].startswith("zero-out one client")
    assert out["trust"].startswith("honest-but-curious server")
    assert out["clients"] == 10 and out["client_train_rows_total"] == 4000
    assert out["secure_aggregation_settings"] == {
        "num_shares": 5,
        "reconstruction_threshold": 3,
        "clipping_range": 8.0,
        "min_clients_unmasked": 8,
    }
    assert set(out["accounting"]) == {"dp-accounting", "flwr"}
    assert out["epsilon"] == pytest.approx(rdp_epsilon([2.0] * 8))  # 7.08
    assert out["epsilon_replace_one"] == pytest.approx(rdp_epsilon([1.0] * 8))  # sensitivity 2C
    assert out["colluding_clients_tolerated"] == 1  # 9 honest shares of 10: 7.43; 8 of 10: 8.08


# --- the server is blind under SecAgg+ ---------------------------------------------------------


class SpyGrid:
    """A Grid that keeps every reply the server receives."""

    def __init__(self, grid: Any) -> None:
        self._grid = grid
        self.replies: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        replies = list(self._grid.send_and_receive(messages, *args, **kwargs))
        self.replies.extend(replies)
        return replies


def _received(replies: list[Any]) -> tuple[list[np.ndarray], list[float]]:
    """Return every array and every scalar in the replies' records (masked vectors decoded)."""
    from flwr.common import bytes_to_ndarray

    arrays: list[np.ndarray] = []
    scalars: list[float] = []

    def take(value: Any) -> None:
        if isinstance(value, bytes):
            with contextlib.suppress(Exception):  # keys and ciphertexts are not arrays
                arrays.append(np.asarray(bytes_to_ndarray(value), dtype=float).ravel())
        elif isinstance(value, list):
            for v in value:
                take(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars.append(float(value))

    for msg in replies:
        if msg.has_error():
            continue
        for record in msg.content.array_records.values():
            arrays.extend(np.asarray(a, dtype=float).ravel() for a in record.to_numpy_ndarrays())
        for record in [*msg.content.config_records.values(), *msg.content.metric_records.values()]:
            for value in record.values():
                take(value)
    return arrays, scalars


@pytest.mark.parametrize(
    ("secure", "dp"), [(True, "none"), (False, "none"), (False, "local")], ids=["secagg", "plain", "local-dp"]
)
def test_the_server_cannot_read_any_clients_update_or_metrics_under_secagg(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, secure: bool, dp: str
) -> None:
    import federated.server_app as server_app
    from federated.client_app import load_client, load_meta, train_network
    from tests.federated.test_federated_simulation import write_spec

    seen: dict[str, Any] = {}
    real = server_app.run_rounds

    def spying(grid: Any, job: Any, context: Any) -> Any:
        spy = SpyGrid(grid)
        out = real(spy, job, context)
        # What each client really sent in round 1: its model trained from the initial one, its loss, its rows.
        directory = str(job.partitions_dir)
        meta = load_meta(directory)
        start = job.initial_arrays().to_numpy_ndarrays()
        truth = []
        for client in range(job.fed.clients):
            data = load_client(directory, client)
            plain = {**meta, "privacy": {"dp": "none"}}  # the model and loss before any DP noise
            params, loss = train_network(start, data, plain, 0.0, meta["seed"] * 100_003 + client * 1_009 + 1)
            truth.append(([np.asarray(p, dtype=float).ravel() for p in params], loss, len(data["y_train"])))
        seen.update(replies=spy.replies, truth=truth)
        return out

    monkeypatch.setattr(server_app, "run_rounds", spying)
    privacy = {"secure_aggregation": {"enabled": secure, "num_shares": 3, "reconstruction_threshold": 2}, "dp": dp}
    spec = write_spec(tmp_path, **{"federated.clients": 4, "federated.rounds": 1, "federated.privacy": privacy})
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    arrays, scalars = _received(seen["replies"])
    assert seen["replies"] and arrays

    def found(param: np.ndarray) -> bool:
        return any(a.shape == param.shape and np.allclose(a, param, rtol=0, atol=1e-7) for a in arrays)

    models = [any(found(p) for p in params) for params, _, _ in seen["truth"]]
    losses = [any(math.isclose(s, loss, rel_tol=1e-9) for s in scalars) for _, loss, _ in seen["truth"]]
    rows = [float(n) in scalars for _, _, n in seen["truth"]]
    if secure or dp == "local":  # local DP: the server gets the noised model and nothing else
        assert not any(models) and not any(losses) and not any(rows), (models, losses, rows)
    else:
        assert all(models) and all(losses) and all(rows), (models, losses, rows)


# --- reporting --------------------------------------------------------------------------------


def test_a_sweep_without_values_is_one_line(tmp_path: Path, cli) -> None:
    result = cli("federate", private_spec(tmp_path, []), "--sweep", "federated.privacy.noise_multiplier=")
    assert result.code == 2
    assert (
        result.err
        == "error: config error: --sweep: expected KEY=V1,V2,... (got 'federated.privacy.noise_multiplier=')\n"
    )


@pytest.mark.slow
def test_a_noise_sweep_writes_utility_against_epsilon(tmp_path: Path, cli) -> None:
    spec = private_spec(tmp_path, [], **{"federated.rounds": 2, "output.report": True})
    result = cli("federate", spec, "--quiet", "--sweep", "federated.privacy.noise_multiplier=1,4")
    assert result.code == 0, result.err
    sweep = json.loads((Path(result.last_line) / "sweep.json").read_text())
    points = sweep["points"]
    assert sweep["key"] == "federated.privacy.noise_multiplier" and [p["value"] for p in points] == ["1", "4"]
    assert points[0]["epsilon"] == pytest.approx(rdp_epsilon([1.0] * 2))
    assert points[1]["epsilon"] == pytest.approx(rdp_epsilon([4.0] * 2))
    assert (Path(result.last_line) / "sweep.png").stat().st_size > 1000
    assert all((Path(p["run"]) / "plots" / "privacy_curve.png").is_file() for p in points)
