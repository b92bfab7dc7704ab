"""Differential privacy of federated runs: the mechanisms, their accounting and the budget.

Four mechanisms (``federated.privacy.dp``), all Gaussian, all accounted by dp-accounting
(RDP and PLD, both reported; ``accountant`` picks the one that enforces ``target_epsilon``):

* ``central``: client-level DP-FedAvg (McMahan et al. 2018). Clients are Poisson-sampled with
  rate ``q = fraction_train``; the server clips each update ``w_i - w`` to ``clipping_norm`` C,
  sums them, adds ``N(0, (z C)^2)`` and divides by the expected number of clients ``q N``
  (a fixed denominator, so one client moves the sum by at most C). Accounted as a
  Poisson-sampled Gaussian per round (plain Gaussian when ``q = 1``). The server is trusted.
* ``distributed``: client-level DP under SecAgg+. Each client clips its update to C and adds
  its share of discrete Gaussian noise in whole SecAgg+ quantization steps (``add_discrete_noise``,
  exact sampler on ``secrets.SystemRandom``), variance ``(z (C / step + sqrt(d)))^2 / m`` steps^2
  (m: clients sampled per round); the server only sees the integer sum, whose noise has
  multiplier z on the integer sensitivity when all m take part. No amplification by
  client sampling is claimed (Flower samples a fixed number of clients); a round with fewer
  replies carries less noise and is accounted with its effective multiplier
  ``z sqrt(replies / m)``.
* ``local``: each client clips its update to C and adds ``N(0, (z C)^2)`` itself, so every
  update it sends is DP for its whole dataset on its own (no trusted server, no aggregation
  needed). Local DP protects any change of the client's data, which can move the clipped update
  anywhere in the C-ball: the sensitivity is its diameter 2C, so each round is accounted as a
  Gaussian release with multiplier ``z / 2``.
* ``dpsgd``: example-level DP inside the clients (Abadi et al. 2016): every local step takes a
  Poisson sample of rows at rate ``q_c = batch_size / n_c``, clips each row's gradient to C,
  adds ``N(0, (z C)^2)`` to their sum and divides by the expected batch size. Accounted per
  client (``epochs * ceil(n_c / batch_size)`` steps a round); the reported epsilon is the
  largest over the clients.

Noise and DP sampling are read from the operating system's CSPRNG (``SystemNoise``: os.urandom;
the distributed mechanism's discrete Gaussian: secrets.SystemRandom), never from the spec's seed:
a seeded noise stream could be regenerated and subtracted by anyone who reads the spec.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.spec import FederatedSpec

MECHANISMS = {
    "central": "Gaussian mechanism on the clipped sum of client updates, added by the server (DP-FedAvg)",
    "distributed": "discrete Gaussian noise shares (exact sampler, CSPRNG) added by the clients to their clipped,"
    " quantized updates, summed under SecAgg+",
    "local": "Gaussian mechanism on each client's clipped update, added by the client",
    "dpsgd": "DP-SGD: per-example gradient clipping and Gaussian noise in every local step",
}
SECAGG_STRATEGIES = ("fedavg", "fedprox")
NEIGHBOURING = {
    "central": "zero-out one client: its clipped update replaced by zero (sensitivity C of the sum)",
    "distributed": "zero-out one client: its clipped update replaced by zero (sensitivity C of the sum)",
    "local": "replace-one: any two datasets of one client (sensitivity 2C of its update)",
    "dpsgd": "add/remove one row of one client (Poisson-sampled batches)",
}
TRUST = {
    "central": "trusted server: it sees every client's update and adds the noise itself",
    "distributed": "honest-but-curious server that follows SecAgg+ (it refuses to unmask a sum of fewer than"
    " min_train_clients clients) and does not collude with clients; clients that collude with the server"
    " know their own noise shares, so t colluders leave noise z sqrt((replies - t) / m)",
    "local": "no trusted party: each client's update is private on its own",
    "dpsgd": "example-level: the server and the other clients are untrusted for rows; client-level facts"
    " (row counts, losses) are outside the guarantee",
}


@dataclass
class PrivacyPlan:
    """The privacy settings of a run, the rounds its budget allows and the epsilon they cost."""

    dp: str
    secure_aggregation: bool
    noise_multiplier: float = 0.0
    clipping_norm: float = 0.0
    delta: float = 0.0
    accountant: str = "rdp"
    target_epsilon: float | None = None
    client_rate: float = 1.0
    clients_per_round: int = 0
    expected_clients: float = 0.0
    client_train_rows: list[int] = field(default_factory=list)
    batch_size: int = 0
    local_epochs: int = 1
    rounds_requested: int = 0
    rounds: int = 0
    epsilon: dict[str, float] = field(default_factory=dict)
    secagg_clipping_range: float = 0.0
    secagg_max_weight: float = 1.0
    secagg_quantization_range: int = 0
    secagg_num_shares: int = 0
    secagg_reconstruction_threshold: int = 0
    min_replies: int = 1
    clients: int = 0
    dimension: int = 0
    budget_stop: bool = False

    @property
    def neighbouring(self) -> str:
        """Return the neighbouring relation the accounting uses."""
        return NEIGHBOURING[self.dp]

    def worst_round_replies(self) -> int | None:
        """Return the fewest replies a round can aggregate (distributed DP: the least noise), else None."""
        return self.min_replies if self.dp == "distributed" else None

    def epsilon_worst_next(self, replies: list[int]) -> float:
        """Return epsilon if one more round ran after ``replies`` with the least noise it can carry."""
        worst = self.worst_round_replies()
        nxt = [*replies, worst] if worst is not None else None
        return self.epsilon_after(len(replies) + 1, self.accountant, nxt if self.dp == "distributed" else None)

    @property
    def on(self) -> bool:
        """Return True when differential privacy is applied."""
        return self.dp != "none"

    def client_meta(self) -> dict[str, Any]:
        """Return what the ClientApp needs to apply its part of the mechanism."""
        return {
            "dp": self.dp,
            "secure_aggregation": self.secure_aggregation,
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self.clipping_norm,
            "clients_per_round": self.clients_per_round,
            "secagg_clipping_range": self.secagg_clipping_range,
            "secagg_max_weight": self.secagg_max_weight,
            "secagg_quantization_range": self.secagg_quantization_range,
        }

    def events(self, rounds: int, replies: list[int] | None = None) -> dict[int, Any]:
        """Return the dp-accounting event of ``rounds`` rounds, per distinct client size for dpsgd.

        ``replies`` (distributed DP) gives the clients that contributed noise in each round run.
        """
        from dp_accounting import dp_event as ev

        z = self.noise_multiplier
        if self.dp == "dpsgd":
            out: dict[int, Any] = {}
            for n in sorted(set(self.client_train_rows)):
                q = min(1.0, self.batch_size / max(n, 1))
                steps = self.local_epochs * math.ceil(n / self.batch_size) * rounds
                step = ev.GaussianDpEvent(z) if q >= 1.0 else ev.PoissonSampledDpEvent(q, ev.GaussianDpEvent(z))
                out[n] = ev.SelfComposedDpEvent(step, steps)
            return out
        if self.dp == "distributed" and replies is not None:
            m = max(self.clients_per_round, 1)
            per_round = [ev.GaussianDpEvent(z * math.sqrt(min(r, m) / m)) if r else ev.NoOpDpEvent() for r in replies]
            return {0: ev.ComposedDpEvent(per_round)}
        if self.dp == "central" and self.client_rate < 1.0:
            sampled = ev.PoissonSampledDpEvent(self.client_rate, ev.GaussianDpEvent(z))
            return {0: ev.SelfComposedDpEvent(sampled, rounds)}
        if self.dp == "local":  # sensitivity 2C (any two datasets of the client), noise z C
            return {0: ev.SelfComposedDpEvent(ev.GaussianDpEvent(z / 2.0), rounds)}
        return {0: ev.SelfComposedDpEvent(ev.GaussianDpEvent(z), rounds)}

    def epsilon_after(self, rounds: int, accountant: str, replies: list[int] | None = None) -> float:
        """Return epsilon at ``delta`` after ``rounds`` rounds (dpsgd: the largest over the clients)."""
        if rounds <= 0 or (replies is not None and not any(replies)):
            return 0.0
        return max(epsilon_of(e, self.delta, accountant) for e in self.events(rounds, replies).values())

    def to_json(self, rounds_run: int, replies: list[int] | None = None) -> dict[str, Any]:
        """Return privacy.json: mechanism, parameters, accountant and the epsilon actually spent."""
        out: dict[str, Any] = {
            "dp": self.dp,
            "secure_aggregation": self.secure_aggregation,
        }
        if not self.on:
            out["mechanism"] = "SecAgg+ only: no differential privacy, epsilon is unbounded"
            out["trust"] = "honest-but-curious server that follows SecAgg+; it learns the sum of the models"
            out["secure_aggregation_settings"] = {
                "num_shares": self.secagg_num_shares,
                "reconstruction_threshold": self.secagg_reconstruction_threshold,
                "clipping_range": self.secagg_clipping_range,
            }
            return out
        spent = {a: self.epsilon_after(rounds_run, a, replies) for a in ("rdp", "pld")}
        info = asdict(self)
        info.pop("client_train_rows")
        info.pop("epsilon")
        info.pop("budget_stop")
        out.update(
            mechanism=MECHANISMS[self.dp],
            level="example" if self.dp == "dpsgd" else "client",
            epsilon=spent[self.accountant],
            epsilon_rdp=spent["rdp"],
            epsilon_pld=spent["pld"],
            delta=self.delta,
            target_epsilon=self.target_epsilon,
            accountant=self.accountant,
            rounds_run=rounds_run,
            stopped_by_budget=self.rounds < self.rounds_requested or self.budget_stop,
            within_budget=self.target_epsilon is None or spent[self.accountant] <= self.target_epsilon + 1e-9,
            neighbouring=self.neighbouring,
            trust=TRUST[self.dp],
            clients=self.clients,
            client_train_rows_total=int(sum(self.client_train_rows)),
            accounting=accounting_versions(),
            settings=info,
        )
        if self.dp in ("central", "distributed"):
            # The same noise under replace-one neighbours: sensitivity 2C, multiplier z / 2.
            doubled = PrivacyPlan(**{**asdict(self), "noise_multiplier": self.noise_multiplier / 2.0})
            out["epsilon_replace_one"] = doubled.epsilon_after(rounds_run, self.accountant, replies)
        if self.dp == "distributed" and replies is not None:
            out["colluding_clients_tolerated"] = self.colluders_tolerated(replies)
        if self.dp == "distributed":
            out["noise"] = self.discrete_noise()
        elif self.dp in ("central", "local", "dpsgd"):
            out["noise"] = {
                "distribution": "floating-point Gaussian N(0, (z C)^2) added to floats",
                "sampler": "Box-Muller",
                "generator": "os.urandom (operating-system CSPRNG), 53 bits per uniform",
            }
        if self.dp == "dpsgd":
            rows = self.client_train_rows
            out["sampling"] = {
                "batch_rate_max": min(1.0, self.batch_size / max(min(rows), 1)),
                "batch_rate_min": min(1.0, self.batch_size / max(max(rows), 1)),
                "client_train_rows_min": min(rows),
                "client_train_rows_max": max(rows),
            }
        elif self.dp == "central":
            out["sampling"] = {"client_rate": self.client_rate, "poisson": self.client_rate < 1.0}
        if replies is not None:
            out["replies_per_round"] = replies
        if self.secure_aggregation:
            out["secure_aggregation_settings"] = {
                "num_shares": self.secagg_num_shares,
                "reconstruction_threshold": self.secagg_reconstruction_threshold,
                "clipping_range": self.secagg_clipping_range,
                "min_clients_unmasked": self.min_replies,
            }
        return out

    def discrete_noise(self) -> dict[str, Any]:
        """Return what the distributed mechanism adds: discrete Gaussian shares on the SecAgg+ integers."""
        from federated.dgauss import sum_tau

        meta = self.client_meta()
        sigma2 = discrete_sigma2(meta, self.dimension)
        step = secagg_step(meta)
        return {
            "distribution": "discrete Gaussian N_Z(0, sigma2) per coordinate, in SecAgg+ quantization steps",
            "sampler": "exact (Canonne, Kamath and Steinke 2020), rational arithmetic",
            "generator": "secrets.SystemRandom (operating-system CSPRNG)",
            "step": step,
            "dimension": self.dimension,
            "integer_sensitivity": self.clipping_norm / step + math.sqrt(self.dimension),
            "client_sigma2": float(sigma2),
            # Kairouz, Liu and Steinke 2021: the sum of m shares is within tau of N_Z(0, m sigma2)
            "sum_tau": sum_tau(float(sigma2), self.clients_per_round),
        }

    def colluders_tolerated(self, replies: list[int]) -> int:
        """Return the most clients that may collude with the server with epsilon still within the budget."""
        if self.target_epsilon is None:
            return 0
        best = 0
        for t in range(1, max(replies, default=0)):
            less = [max(r - t, 0) for r in replies]
            if not all(less) or self.epsilon_after(len(replies), self.accountant, less) > self.target_epsilon:
                break
            best = t
        return best


def accounting_versions() -> dict[str, str]:
    """Return the versions of the accounting library and of Flower."""
    from importlib.metadata import version

    return {"dp-accounting": version("dp-accounting"), "flwr": version("flwr")}


def epsilon_of(event: Any, delta: float, accountant: str) -> float:
    """Return epsilon at ``delta`` of a dp-accounting event under the RDP or the PLD accountant."""
    import logging

    from dp_accounting.pld import PLDAccountant
    from dp_accounting.rdp import RdpAccountant

    # The RDP accountant logs each fractional order whose series does not converge and drops it
    # from the minimum, which only loosens (never understates) epsilon: not worth a warning per call.
    logging.getLogger("absl").setLevel(logging.ERROR)
    acc = RdpAccountant() if accountant == "rdp" else PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def check_privacy(fed: FederatedSpec, model: str) -> None:
    """Raise a ConfigError for a privacy setting the model, strategy or federation cannot honour."""
    priv = fed.privacy
    secagg = priv.secure_aggregation
    if secagg.enabled:
        if model == "xgboost":
            raise ConfigError(
                "config error: federated.privacy.secure_aggregation: SecAgg+ sums parameter vectors;"
                " xgboost's trees cannot be summed (use logistic_regression, linear_svm or mlp)"
            )
        if fed.strategy not in SECAGG_STRATEGIES:
            why = (
                "needs every client's model, SecAgg+ reveals only their sum"
                if fed.strategy in ("krum", "fedtrimmedavg")
                else "is not wired into the SecAgg+ workflow here"
            )
            raise ConfigError(
                f"config error: federated.privacy.secure_aggregation: {fed.strategy} {why}"
                f" (allowed: {', '.join(SECAGG_STRATEGIES)})"
            )
        per_round = clients_per_round(fed)
        if 2 * secagg.reconstruction_threshold <= secagg.num_shares:
            raise ConfigError(
                f"config error: federated.privacy.secure_aggregation.reconstruction_threshold:"
                f" {secagg.reconstruction_threshold} is at most half of num_shares {secagg.num_shares};"
                " a minority of clients could then rebuild a live client's masks (use more than half)"
            )
        if secagg.num_shares > per_round:
            raise ConfigError(
                f"config error: federated.privacy.secure_aggregation.num_shares: {secagg.num_shares} exceeds the"
                f" {per_round} clients sampled per round"
            )
    if priv.dp == "none":
        return
    if model == "xgboost":
        raise ConfigError(
            f"config error: federated.privacy.dp: {priv.dp} DP covers the parameter-averaged models"
            " (logistic_regression, linear_svm, mlp), not xgboost"
        )
    if priv.dp == "central" and secagg.enabled:
        raise ConfigError(
            "config error: federated.privacy.dp: central DP clips each client's update on the server, which"
            " SecAgg+ hides; use dp: distributed with secure aggregation"
        )
    if priv.dp == "central" and fed.strategy not in ("fedavg", "fedprox"):
        raise ConfigError(
            f"config error: federated.privacy.dp: central DP replaces the server's averaging, which {fed.strategy}"
            " does its own way (allowed: fedavg, fedprox)"
        )
    if priv.dp == "distributed" and not secagg.enabled:
        raise ConfigError(
            "config error: federated.privacy.dp: distributed DP needs"
            " federated.privacy.secure_aggregation.enabled: true (the server must see only the noisy sum)"
        )
    if priv.dp == "distributed" and fed.min_train_clients < 2:
        raise ConfigError(
            "config error: federated.min_train_clients: distributed DP needs at least 2 (a sum of one"
            " client's update is that update)"
        )
    if priv.dp != "dpsgd":
        plan_privacy(fed, [])  # accounting does not depend on the data: refuse an impossible budget now


def clients_per_round(fed: FederatedSpec) -> int:
    """Return how many clients Flower samples for training each round."""
    return min(fed.clients, max(int(fed.clients * fed.fraction_train), fed.min_train_clients))


def plan_privacy(fed: FederatedSpec, client_train_rows: list[int]) -> PrivacyPlan:
    """Return the run's privacy plan: the rounds that fit ``target_epsilon`` and their epsilon.

    Raises a ConfigError when not even one round fits the budget.
    """
    priv = fed.privacy
    plan = PrivacyPlan(priv.dp, priv.secure_aggregation.enabled, rounds_requested=fed.rounds, rounds=fed.rounds)
    plan.clients_per_round = clients_per_round(fed)
    plan.clients = fed.clients
    # fedxgb_cyclic trains one client per round by design.
    plan.min_replies = 1 if fed.strategy == "fedxgb_cyclic" else min(fed.min_train_clients, plan.clients_per_round)
    if plan.secure_aggregation:
        plan.secagg_num_shares = priv.secure_aggregation.num_shares
        plan.secagg_quantization_range = priv.secure_aggregation.quantization_range
        plan.secagg_reconstruction_threshold = priv.secure_aggregation.reconstruction_threshold
        # Clients report num_examples 1 under distributed DP (an unweighted sum), else their rows.
        plan.secagg_clipping_range = priv.secure_aggregation.clipping_range
        plan.secagg_max_weight = 1.0 if priv.dp == "distributed" else float(max(client_train_rows, default=1))
    if not plan.on:
        return plan
    plan.noise_multiplier = priv.noise_multiplier
    plan.clipping_norm = priv.clipping_norm
    plan.delta = priv.delta
    plan.accountant = priv.accountant
    plan.target_epsilon = priv.target_epsilon
    plan.client_rate = fed.fraction_train if priv.dp == "central" else 1.0
    plan.expected_clients = plan.client_rate * fed.clients
    plan.client_train_rows = [int(n) for n in client_train_rows]
    plan.batch_size = fed.batch_size
    plan.local_epochs = fed.local_epochs
    if priv.target_epsilon is not None:
        worst = plan.epsilon_worst_next([])
        if plan.dp == "distributed" and worst > priv.target_epsilon:
            raise ConfigError(
                f"config error: federated.privacy.target_epsilon: one round with only min_train_clients"
                f" {plan.min_replies} of {plan.clients_per_round} clients answering spends epsilon {worst:.3g}"
                f" > {priv.target_epsilon:g} ({priv.accountant}); raise noise_multiplier, min_train_clients"
                " or the budget"
            )
        plan.rounds = rounds_within(plan, priv.target_epsilon)
        if plan.rounds == 0:
            one = plan.epsilon_after(1, priv.accountant)
            raise ConfigError(
                f"config error: federated.privacy.target_epsilon: one round already spends epsilon {one:.3g}"
                f" > {priv.target_epsilon:g} ({priv.accountant}); raise noise_multiplier or the budget"
            )
    plan.epsilon = {a: plan.epsilon_after(plan.rounds, a) for a in ("rdp", "pld")}
    return plan


def rounds_within(plan: PrivacyPlan, budget: float) -> int:
    """Return the most rounds (up to the requested number) whose epsilon stays within ``budget``."""
    lo, hi = 0, plan.rounds_requested
    if plan.epsilon_after(hi, plan.accountant) <= budget:
        return hi
    while hi - lo > 1:  # epsilon grows with rounds: bisect on the last round that fits
        mid = (lo + hi) // 2
        if plan.epsilon_after(mid, plan.accountant) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


class SystemNoise:
    """DP randomness read from the operating system's CSPRNG (``os.urandom``), never from a seed.

    Every uniform is 53 random bits of ``os.urandom`` (no PRNG state in between); Gaussians are
    Box-Muller on those uniforms. The noise is still floating-point Gaussian added to floats, so it
    keeps the known floating-point weaknesses of the textbook mechanism (Mironov 2012); the
    distributed mechanism's discrete Gaussian on integers (federated/dgauss.py) does not have them.
    """

    def random(self, size: int | tuple[int, ...] | None = None) -> Any:
        """Return uniforms on [0, 1) (a float when ``size`` is None)."""
        n = 1 if size is None else int(np.prod(size))
        bits = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
        out = bits.astype(np.float64) * (1.0 / (1 << 53))
        return float(out[0]) if size is None else out.reshape(size)

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: int | tuple[int, ...] | None = None) -> Any:
        """Return Gaussians N(loc, scale^2) by Box-Muller on CSPRNG uniforms."""
        n = 1 if size is None else int(np.prod(size))
        u1 = 1.0 - self.random(n)  # (0, 1]: log is finite
        u2 = self.random(n)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        out = loc + scale * z
        return float(out[0]) if size is None else out.reshape(size)

    def permutation(self, n: int) -> np.ndarray:
        """Return a uniformly random permutation of ``range(n)`` (CSPRNG keys, sorted)."""
        return np.argsort(self.random(n), kind="stable")


def noise_rng() -> SystemNoise:
    """Return the source of DP noise and DP sampling: the operating system's CSPRNG (never the spec)."""
    return SystemNoise()


def clip(update: list[np.ndarray], bound: float) -> tuple[list[np.ndarray], float]:
    """Return ``update`` scaled to L2 norm at most ``bound`` (over all arrays) and its norm before."""
    norm = math.sqrt(sum(float(np.sum(np.square(u))) for u in update))
    scale = min(1.0, bound / norm) if norm > 0 else 1.0
    return [u * scale for u in update], norm


def add_noise(arrays: list[np.ndarray], std: float, rng: SystemNoise) -> list[np.ndarray]:
    """Return ``arrays`` plus independent Gaussian noise of standard deviation ``std``."""
    return [a + rng.normal(0.0, std, size=a.shape) for a in arrays]


def privatize_update(
    start: list[np.ndarray], trained: list[np.ndarray], meta: dict[str, Any], rng: SystemNoise
) -> list[np.ndarray]:
    """Return the model a client sends under local or distributed DP: start + clipped, noised update."""
    dp = meta["dp"]
    if dp not in ("local", "distributed"):
        return trained
    bound, z = float(meta["clipping_norm"]), float(meta["noise_multiplier"])
    update, _ = clip([t - s for t, s in zip(trained, start, strict=True)], bound)
    if dp == "distributed":
        return [s + u for s, u in zip(start, add_discrete_noise(update, meta), strict=True)]
    return [s + u for s, u in zip(start, add_noise(update, z * bound, rng), strict=True)]


def secagg_step(meta: dict[str, Any]) -> float:
    """Return the SecAgg+ quantization step ``2 * clipping_range / quantization_range`` (2^-18 by default)."""
    return 2.0 * float(meta["secagg_clipping_range"]) / float(meta["secagg_quantization_range"])


def discrete_sigma2(meta: dict[str, Any], dimension: int) -> Fraction:
    """Return each client's discrete Gaussian variance, in quantization steps squared.

    The integer vectors SecAgg+ sums move by at most ``C / step + sqrt(d)`` in L2 when one
    client's clipped update is zeroed (stochastic rounding adds less than one step per
    coordinate); the m clients' variances add up to ``(z * that)^2``, so the sum carries noise
    multiplier z on the integers. Rounded up to a rational.
    """
    sensitivity = float(meta["clipping_norm"]) / secagg_step(meta) + math.sqrt(dimension)
    m = max(int(meta["clients_per_round"]), 1)
    var = (float(meta["noise_multiplier"]) * sensitivity) ** 2 / m
    return Fraction(math.ceil(var * 1000), 1000)


def add_discrete_noise(update: list[np.ndarray], meta: dict[str, Any]) -> list[np.ndarray]:
    """Return ``update`` plus discrete Gaussian noise in whole SecAgg+ quantization steps (CSPRNG).

    The noise is an integer number of steps, so SecAgg+'s quantization (scale by 1 / step, then
    stochastic rounding) carries it onto the integer vector exactly: the server unmasks a sum of
    integer discrete Gaussians (federated/dgauss.py).
    """
    from federated.dgauss import discrete_gaussian_array

    step = secagg_step(meta)
    sigma2 = discrete_sigma2(meta, sum(int(u.size) for u in update))
    return [u + discrete_gaussian_array(sigma2, u.shape).astype(np.float64) * step for u in update]


def central_aggregate(
    global_model: list[np.ndarray],
    client_models: list[list[np.ndarray]],
    bound: float,
    noise_multiplier: float,
    expected_clients: float,
    rng: SystemNoise,
) -> list[np.ndarray]:
    """Return the DP-FedAvg global model: clipped updates summed, noised and divided by ``q N``."""
    total = [np.zeros_like(g, dtype=np.float64) for g in global_model]
    for model in client_models:
        update, _ = clip([m - g for m, g in zip(model, global_model, strict=True)], bound)
        total = [t + u for t, u in zip(total, update, strict=True)]
    noisy = add_noise(total, noise_multiplier * bound, rng)
    return [g + n / expected_clients for g, n in zip(global_model, noisy, strict=True)]


def poisson_sample(node_ids: list[int], rate: float, rng: SystemNoise) -> list[int]:
    """Return each node independently with probability ``rate`` (Poisson sampling)."""
    if rate >= 1.0:
        return list(node_ids)
    return [n for n in sorted(node_ids) if rng.random() < rate]
