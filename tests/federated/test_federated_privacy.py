"""Privacy of federated runs: DP mechanisms, their accounting and budget, and SecAgg+ end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dp_accounting import dp_event as ev
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from federated.models import NetSpec, clipped_grad_sum, loss_and_grad
from federated.privacy import central_aggregate, clip, plan_privacy, privatize_update
from pipelines.errors import ConfigError
from pipelines.spec import FederatedSpec
from tests.federated.test_federated_simulation import write_spec


def fed_spec(**privacy: object) -> FederatedSpec:
    return FederatedSpec.model_validate({"clients": 20, "rounds": 30, "privacy": privacy})


def direct_epsilon(event: ev.DpEvent, delta: float) -> tuple[float, float]:
    rdp, pld = RdpAccountant(), PLDAccountant(value_discretization_interval=1e-3)
    rdp.compose(event)
    pld.compose(event)
    return rdp.get_epsilon(delta), pld.get_epsilon(delta)


# --- mechanisms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "net",
    [
        NetSpec(6, (), 2, "logistic", 0.0),
        NetSpec(6, (), 3, "logistic", 0.0),
        NetSpec(6, (), 3, "squared_hinge", 0.0),
        NetSpec(6, (5, 4), 3, "logistic", 0.0),
    ],
    ids=["binary-logistic", "softmax", "hinge", "mlp"],
)
def test_dpsgd_clips_every_rows_gradient_before_summing(net: NetSpec) -> None:
    rng = np.random.default_rng(3)
    params = [p + rng.normal(0, 0.7, p.shape) for p in net.init(1)]
    x, y, w = rng.normal(size=(9, 6)), rng.integers(0, net.n_classes, 9), rng.uniform(0.5, 2.0, 9)
    expected = [np.zeros_like(p) for p in params]
    norms = []
    for i in range(9):  # one row at a time: that row's gradient, clipped to 0.25
        _, grads = loss_and_grad(net, params, x[i : i + 1], y[i : i + 1], w[i : i + 1])
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        norms.append(norm)
        expected = [e + g * min(1.0, 0.25 / norm) for e, g in zip(expected, grads, strict=True)]
    assert max(norms) > 0.25  # some rows are really clipped
    loss, got = clipped_grad_sum(net, params, x, y, w, 0.25)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-12)
    assert loss == pytest.approx(loss_and_grad(net, params, x, y, w)[0] * 9)


def test_clip_bounds_the_norm_over_all_arrays() -> None:
    update = [np.full((3, 2), 2.0), np.full(2, 2.0)]  # norm sqrt(8 * 4)
    clipped, norm = clip(update, 1.0)
    assert norm == pytest.approx(math.sqrt(32))
    assert math.sqrt(sum(float((c**2).sum()) for c in clipped)) == pytest.approx(1.0)
    same, _ = clip(update, 100.0)
    np.testing.assert_array_equal(same[0], update[0])


def test_central_aggregate_adds_noise_of_z_c_over_qn_to_the_clipped_mean() -> None:
    rng = np.random.default_rng(0)
    global_model = [np.zeros(20_000)]
    clients = [[np.full(20_000, 0.01 * (k + 1))] for k in range(4)]  # norms 1.41 .. 5.66: all clipped to 1
    out = central_aggregate(global_model, clients, 1.0, 2.0, 8.0, rng)[0]
    clipped_mean = sum(c[0] / np.linalg.norm(c[0]) for c in clients) / 8.0
    residual = out - clipped_mean
    assert abs(residual.mean()) < 0.01
    assert residual.std() == pytest.approx(2.0 * 1.0 / 8.0, rel=0.03)


def test_local_dp_clients_clip_their_update_and_add_their_noise() -> None:
    start = [np.ones(40_000)]
    trained = [np.ones(40_000) * 3.0]  # update norm 400: clipped to 0.5
    meta = {"dp": "local", "clipping_norm": 0.5, "noise_multiplier": 1.5, "clients_per_round": 4}
    sent = privatize_update(start, trained, meta, np.random.default_rng(1))[0]
    noise = sent - 1.0 - 0.5 / 200.0
    assert noise.std() == pytest.approx(1.5 * 0.5, rel=0.03)
    assert abs(noise.mean()) < 0.01


def test_distributed_dp_clients_add_discrete_gaussian_noise_in_whole_secagg_steps() -> None:
    start = [np.ones(10_000)]
    trained = [np.ones(10_000) * 3.0]  # update norm 200: clipped to 0.5
    meta = {
        "dp": "distributed",
        "clipping_norm": 0.5,
        "noise_multiplier": 1.5,
        "clients_per_round": 4,
        "secagg_clipping_range": 8.0,
        "secagg_quantization_range": 2**22,
    }
    sent = privatize_update(start, trained, meta, np.random.default_rng(1))[0]
    step = 16.0 / 2**22
    steps = (sent - 1.0 - 0.5 / 100.0) / step
    assert np.abs(steps - np.round(steps)).max() < 1e-3  # integers on the SecAgg+ grid
    # the 4 clients' shares sum to multiplier 1.5 on the integer sensitivity C / step + sqrt(d)
    expected = 1.5 * (0.5 / step + 100.0) / 2.0
    assert steps.std() == pytest.approx(expected, rel=0.03) and abs(steps.mean()) < 0.05 * expected


def _toy_client() -> tuple[list[np.ndarray], dict, dict]:
    rng = np.random.default_rng(5)
    net = NetSpec(4, (), 2, "logistic", 0.0)
    x = rng.normal(size=(200, 4))
    data = {"x_train": x, "y_train": (x[:, 0] > 0).astype(int), "w_train": np.ones(200)}
    meta = {"net": net.to_dict(), "local_epochs": 1, "batch_size": 20, "learning_rate": 0.1}
    return net.init(0), data, meta


def test_the_client_sends_a_clipped_update_under_local_dp() -> None:
    from federated.client_app import train_network

    start, data, meta = _toy_client()
    moved, _ = train_network(start, data, {**meta, "privacy": {"dp": "none"}}, 0.0, 1)
    assert np.abs(moved[0]).max() > 0.1
    privacy = {"dp": "local", "clipping_norm": 1e-9, "noise_multiplier": 0.0, "clients_per_round": 1}
    still, _ = train_network(start, data, {**meta, "privacy": privacy}, 0.0, 1)
    assert np.abs(still[0] - start[0]).max() < 1e-8


def test_dpsgd_clients_take_clipped_noisy_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import federated.models as models
    from federated.client_app import train_network

    start, data, meta = _toy_client()
    calls: list[float] = []

    def zero_gradients(spec, params, x, y, w, bound):
        calls.append(bound)
        return 0.0, [np.zeros_like(p) for p in params]

    monkeypatch.setattr(models, "clipped_grad_sum", zero_gradients)
    privacy = {"dp": "dpsgd", "clipping_norm": 0.7, "noise_multiplier": 0.0}
    still, _ = train_network(start, data, {**meta, "privacy": privacy}, 0.0, 1)
    assert calls == [0.7] * 10  # ceil(200 / 20) clipped steps, as the accountant counts them
    np.testing.assert_array_equal(still[0], start[0])  # zero clipped gradients, no noise: no move
    noisy, _ = train_network(start, data, {**meta, "privacy": {**privacy, "noise_multiplier": 1.0}}, 0.0, 1)
    assert np.abs(noisy[0] - start[0]).max() > 0.05  # only the Gaussian noise moved it


# --- accounting -------------------------------------------------------------------------------


def test_central_dp_is_accounted_as_a_poisson_sampled_gaussian_per_round() -> None:
    fed = fed_spec(dp="central", noise_multiplier=1.2)
    fed.fraction_train = 0.25
    plan = plan_privacy(fed, [100] * 20)
    event = ev.SelfComposedDpEvent(ev.PoissonSampledDpEvent(0.25, ev.GaussianDpEvent(1.2)), 30)
    rdp, pld = direct_epsilon(event, 1e-5)
    assert plan.epsilon["rdp"] == pytest.approx(rdp) and plan.epsilon["pld"] == pytest.approx(pld)
    assert pld < rdp  # PLD is the tighter accountant
    assert plan.expected_clients == pytest.approx(5.0) and plan.rounds == 30


def test_local_dp_is_accounted_with_sensitivity_twice_the_clipping_norm() -> None:
    fed = fed_spec(dp="local", noise_multiplier=3.0)
    plan = plan_privacy(fed, [100] * 20)
    rdp, pld = direct_epsilon(ev.SelfComposedDpEvent(ev.GaussianDpEvent(1.5), 30), 1e-5)
    assert plan.epsilon["rdp"] == pytest.approx(rdp) and plan.epsilon["pld"] == pytest.approx(pld)


def test_dpsgd_reports_the_worst_client() -> None:
    fed = fed_spec(dp="dpsgd", noise_multiplier=1.1)
    plan = plan_privacy(fed, [200, 1000, 200, 640])
    worst = ev.SelfComposedDpEvent(ev.PoissonSampledDpEvent(32 / 200, ev.GaussianDpEvent(1.1)), 7 * 30)
    best = ev.SelfComposedDpEvent(ev.PoissonSampledDpEvent(32 / 1000, ev.GaussianDpEvent(1.1)), 32 * 30)
    assert plan.epsilon["rdp"] == pytest.approx(direct_epsilon(worst, 1e-5)[0])
    assert plan.epsilon["rdp"] > direct_epsilon(best, 1e-5)[0]


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_training_stops_before_the_budget_is_exceeded(accountant: str) -> None:
    fed = fed_spec(dp="local", noise_multiplier=4.0, target_epsilon=3.0, accountant=accountant)
    plan = plan_privacy(fed, [100] * 20)
    assert 0 < plan.rounds < 30
    assert plan.epsilon_after(plan.rounds, accountant) <= 3.0 < plan.epsilon_after(plan.rounds + 1, accountant)
    assert plan.to_json(plan.rounds)["stopped_by_budget"] is True


def test_a_budget_that_no_round_fits_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"target_epsilon: one round already spends epsilon .* > 0\.1 \(rdp\)"):
        plan_privacy(fed_spec(dp="local", noise_multiplier=1.0, target_epsilon=0.1), [100] * 20)


def test_a_distributed_round_with_fewer_replies_is_accounted_with_less_noise() -> None:
    fed = fed_spec(dp="distributed", noise_multiplier=1.0, secure_aggregation={"enabled": True})
    fed.rounds = 3
    plan = plan_privacy(fed, [100] * 20)
    full = plan.epsilon_after(3, "rdp")
    assert plan.epsilon_after(3, "rdp", [20, 20, 20]) == pytest.approx(full)
    assert plan.epsilon_after(3, "rdp", [20, 15, 20]) > full


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"federated.privacy": {"dp": "central"}, "model.name": "xgboost", "federated.strategy": "fedxgb_bagging"},
            "federated.privacy.dp: central DP covers the parameter-averaged models",
        ),
        (
            {"federated.privacy": {"dp": "central", "secure_aggregation": {"enabled": True}}},
            "use dp: distributed with secure aggregation",
        ),
        ({"federated.privacy": {"dp": "distributed"}}, "distributed DP needs federated.privacy.secure_aggregation"),
        (
            {"federated.privacy": {"secure_aggregation": {"enabled": True}}, "federated.strategy": "krum"},
            "krum needs every client's model",
        ),
        (
            {"federated.privacy": {"secure_aggregation": {"enabled": True}}, "federated.strategy": "fedadam"},
            "fedadam is not wired into the SecAgg+ workflow here (allowed: fedavg, fedprox)",
        ),
        (
            {"federated.privacy": {"secure_aggregation": {"enabled": True, "num_shares": 4}}},
            "num_shares must be odd",
        ),
        (
            {
                "federated.privacy": {
                    "secure_aggregation": {"enabled": True, "num_shares": 11, "reconstruction_threshold": 6}
                }
            },
            "num_shares: 11 exceeds the 10 clients sampled per round",
        ),
        ({"federated.privacy": {"dp": "local", "noise_multiplier": 0}}, "noise_multiplier"),
    ],
    ids=[
        "xgboost-dp",
        "central-secagg",
        "distributed-plain",
        "krum-secagg",
        "fedadam-secagg",
        "even-shares",
        "shares-clients",
        "z0",
    ],
)
def test_bad_privacy_settings_give_one_line(tmp_path: Path, cli, changes: dict, message: str) -> None:
    result = cli("federate", write_spec(tmp_path, **changes))
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --- end to end -------------------------------------------------------------------------------


def test_secagg_plus_aggregates_what_plain_fedavg_does_and_survives_a_dropout(tmp_path: Path, cli) -> None:
    base = {"federated.clients": 5, "federated.rounds": 3, "federated.fail_clients": [3], "federated.fail_rounds": [2]}
    (tmp_path / "plain").mkdir()
    (tmp_path / "secure").mkdir()
    plain = cli("federate", write_spec(tmp_path / "plain", **base), "--quiet")
    assert plain.code == 0, plain.err
    secure = cli(
        "federate",
        write_spec(tmp_path / "secure", **base, **{"federated.privacy": {"secure_aggregation": {"enabled": True}}}),
        "--quiet",
    )
    assert secure.code == 0, secure.err
    runs = [Path(plain.last_line), Path(secure.last_line)]
    histories = [json.loads((r / "history.json").read_text())["rounds"] for r in runs]
    plain_rounds, secure_rounds = histories
    assert [r["train_clients"] for r in plain_rounds[1:]] == [[0, 1, 2, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3, 4]]
    assert plain_rounds[-1]["federated_evaluation"]["accuracy"] > 0.55
    # Under SecAgg+ the server learns how many masked models were summed, not whose, nor their metrics.
    assert [r["train_replies"] for r in secure_rounds[1:]] == [5, 4, 5]
    assert [r["failed_train"] for r in secure_rounds[1:]] == [0, 1, 0]
    assert all(r["train_clients"] == [] and r["federated_evaluation"] == {} for r in secure_rounds)
    # SecAgg+ quantizes to 2^22 levels over +-8: the same global model up to that rounding (~1e-6
    # here; weighting the clients equally instead of by rows moves the probabilities by ~7e-3).
    p_plain, p_secure = (pq.read_table(r / "predictions.parquet").column("proba_1").to_numpy() for r in runs)
    assert 0 < np.max(np.abs(p_plain - p_secure)) < 1e-4
    assert histories[1][-1]["centralized_evaluation"]["auc"] == pytest.approx(
        histories[0][-1]["centralized_evaluation"]["auc"], abs=1e-3
    )
    privacy = json.loads((runs[1] / "privacy.json").read_text())
    assert privacy["secure_aggregation"] is True and privacy["dp"] == "none"
    assert not (runs[0] / "privacy.json").exists()


def test_distributed_dp_under_secagg_accounts_the_rounds_clients_missed(tmp_path: Path, cli) -> None:
    secagg = {"enabled": True}
    # A clipping norm of 1e-4 holds the model at its start (log loss ln 2) only if clients clip.
    privacy = {"dp": "distributed", "noise_multiplier": 0.8, "clipping_norm": 1e-4, "secure_aggregation": secagg}
    spec = write_spec(
        tmp_path,
        **{
            "federated.clients": 5,
            "federated.rounds": 3,
            "federated.fail_clients": [1],
            "federated.fail_rounds": [2],
            "federated.privacy": privacy,
        },
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    run = Path(result.last_line)
    out = json.loads((run / "privacy.json").read_text())
    assert out["replies_per_round"] == [5, 4, 5] and out["level"] == "client"
    z = 0.8
    events = [ev.GaussianDpEvent(z), ev.GaussianDpEvent(z * math.sqrt(4 / 5)), ev.GaussianDpEvent(z)]
    rdp, pld = direct_epsilon(ev.ComposedDpEvent(events), 1e-5)
    assert out["epsilon_rdp"] == pytest.approx(rdp) and out["epsilon_pld"] == pytest.approx(pld)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["federated"]["privacy"]["epsilon"] == pytest.approx(rdp)
    assert metrics["test"]["log_loss"] > 0.68  # plain FedAvg reaches ~0.63 here


def test_central_dp_stops_at_the_budget_and_writes_privacy_json(tmp_path: Path, cli) -> None:
    # A clipping norm of 1e-4 holds the model at its start (log loss ln 2) only if the server clips.
    privacy = {"dp": "central", "noise_multiplier": 2.0, "clipping_norm": 1e-4, "target_epsilon": 6.0}
    spec = write_spec(tmp_path, **{"federated.rounds": 8, "federated.privacy": privacy})
    result = cli("federate", spec)
    assert result.code == 0, result.err
    run = Path(result.last_line)
    out = json.loads((run / "privacy.json").read_text())
    rounds = json.loads((run / "history.json").read_text())["rounds"]
    ran = len(rounds) - 1
    assert 0 < ran < 8 and out["rounds_run"] == ran and out["stopped_by_budget"] is True
    assert out["epsilon"] <= 6.0 and out["within_budget"] is True
    one_more = ev.SelfComposedDpEvent(ev.GaussianDpEvent(2.0), ran + 1)
    assert direct_epsilon(one_more, 1e-5)[0] > 6.0
    assert out["mechanism"].startswith("Gaussian mechanism on the clipped sum") and out["accountant"] == "rdp"
    assert f"{ran} of 8 rounds fit target_epsilon 6" in result.err
    assert rounds[-1]["centralized_evaluation"]["log_loss"] > 0.68  # plain FedAvg: ~0.63 after 1 round


def test_dpsgd_clients_under_secagg_still_learn(tmp_path: Path, cli) -> None:
    privacy = {
        "dp": "dpsgd",
        "noise_multiplier": 1.0,
        "clipping_norm": 1.0,
        "secure_aggregation": {"enabled": True},
    }
    spec = write_spec(
        tmp_path, **{"data.rows": 20_000, "federated.clients": 5, "federated.rounds": 3, "federated.privacy": privacy}
    )
    result = cli("federate", spec, "--quiet")
    assert result.code == 0, result.err
    run = Path(result.last_line)
    out = json.loads((run / "privacy.json").read_text())
    partitions = json.loads((run / "partitions.json").read_text())["clients"]
    smallest = min(c["train_rows"] for c in partitions)
    steps = math.ceil(smallest / 32) * 3
    worst = ev.SelfComposedDpEvent(ev.PoissonSampledDpEvent(32 / smallest, ev.GaussianDpEvent(1.0)), steps)
    assert out["level"] == "example" and out["epsilon"] == pytest.approx(direct_epsilon(worst, 1e-5)[0])
    assert out["sampling"]["batch_rate_max"] == pytest.approx(32 / smallest)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.65  # higgs: the plain model reaches ~0.68 in 3 rounds


def test_discrete_noise_lands_on_the_secagg_integers_exactly() -> None:
    from flwr.common.secure_aggregation.quantization import quantize

    from federated.dgauss import discrete_gaussian_array
    from federated.privacy import discrete_sigma2, secagg_step

    meta = {
        "clipping_norm": 0.5,
        "noise_multiplier": 2.0,
        "clients_per_round": 10,
        "secagg_clipping_range": 8.0,
        "secagg_quantization_range": 2**22,
    }
    step = secagg_step(meta)
    model = np.random.default_rng(3).normal(0.0, 0.3, size=500)
    k = discrete_gaussian_array(discrete_sigma2(meta, 500), (500,))
    np.random.seed(7)  # SecAgg+'s stochastic rounding draws from NumPy's global generator
    plain = quantize([model], 8.0, 2**22)[0]
    np.random.seed(7)
    noised = quantize([model + k.astype(np.float64) * step], 8.0, 2**22)[0]
    assert np.array_equal(noised.astype(np.int64) - plain.astype(np.int64), k)


def test_the_discrete_gaussian_sampler_is_exact_in_law_and_uses_the_os_csprng() -> None:
    import secrets
    from fractions import Fraction

    from federated import dgauss

    assert isinstance(dgauss._RNG, secrets.SystemRandom)
    x = dgauss.discrete_gaussian_array(Fraction(9, 4), (6000,))
    assert x.dtype == np.int64 and abs(x.mean()) < 0.08
    # N_Z(0, 9/4): P(0) = 1 / sum_k exp(-k^2 / 4.5); its variance is 2.25 to 4 decimals
    p0 = 1.0 / sum(math.exp(-(k**2) / 4.5) for k in range(-40, 41))
    assert np.mean(x == 0) == pytest.approx(p0, abs=0.02) and x.var() == pytest.approx(2.25, rel=0.08)


def test_dp_noise_is_read_from_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    """Central/local DP and DP-SGD noise: os.urandom bits through Box-Muller, untouched by NumPy's seeding."""
    import os

    import numpy as np

    from federated.privacy import noise_rng

    draws = noise_rng().normal(0.0, 2.0, size=(200, 1000))
    assert abs(float(draws.mean())) < 0.03 and abs(float(draws.std()) - 2.0) < 0.03
    np.random.seed(0)
    first = noise_rng().normal(0.0, 1.0, size=8)
    np.random.seed(0)
    assert not np.array_equal(first, noise_rng().normal(0.0, 1.0, size=8))
    # Every uniform is 8 fresh os.urandom bytes (a seeded PRNG would read 16 bytes once), and fixed
    # bytes give fixed noise: no other source is mixed in.
    read: list[int] = []
    real = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: read.append(n) or real(n))
    noise_rng().normal(0.0, 1.0, size=64)
    assert sum(read) == 2 * 64 * 8
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(256)) * (n // 256) + bytes(range(n % 256)))
    assert np.array_equal(noise_rng().normal(0.0, 1.0, size=64), noise_rng().normal(0.0, 1.0, size=64))
    assert sorted(noise_rng().permutation(50).tolist()) == list(range(50))
