"""The round guard: a federated run's budget and its failed rounds, checked around every round.

Rounds are planned up front assuming every sampled client answers; what actually happens is
checked here, in both the SecAgg+ workflow (federated/secagg.py) and the new-API strategies
(federated/server_app.py):

* before the first round, the server waits ``federated.wait_clients_s`` for all
  ``federated.clients`` nodes (a simulation, whose nodes all exist from its start, about a
  second); fewer stop the run with one line naming how many are missing;
* before every round, epsilon is computed for the worst case that round could produce (under
  distributed DP: only ``min_train_clients`` replies, so the least noise); a round that could
  take epsilon past ``target_epsilon`` does not run and training stops there;
* after every round, epsilon is recomputed from what happened (the replies whose noise shares
  were summed) and written into the round's history; a round that aggregated fewer than
  ``min_train_clients`` clients is marked failed, and more than ``federated.max_failed_rounds``
  failed rounds stop the run with one line (exit 4).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipelines.errors import EngineError

if TYPE_CHECKING:
    from federated.server_app import History
    from federated.simulation import FederatedJob


SIMULATION_SETTLE_S = 1.0  # a simulation registers its nodes in one loop; 1 s covers a loaded machine


class StopRounds(Exception):
    """Raised inside a strategy to end training before the next round (the budget would be exceeded)."""


class RoundGuard:
    """Checks a run's clients, failed rounds and privacy budget around each round."""

    def __init__(self, job: FederatedJob, history: History) -> None:
        self.job = job
        self.history = history
        self.plan = job.privacy
        self.fed = job.fed

    def wait_for_clients(self, grid: Any) -> None:
        """Wait until every client's node is connected; raise an EngineError naming the missing ones.

        A simulation (Flower's InMemoryGrid: ``flwr run`` on a simulation federation, ``scaleclf
        federate``) registers all its nodes at once as it starts, so once any node is there the
        count is final and a shortfall stops the run within a second instead of after the wait.
        """
        need = self.fed.clients
        deadline = time.monotonic() + self.fed.wait_clients_s
        simulated = type(grid).__name__ == "InMemoryGrid"
        settled: float | None = None
        while (have := len(list(grid.get_node_ids()))) < need:
            now = time.monotonic()
            if simulated and have and settled is None:
                settled = now + SIMULATION_SETTLE_S
            if now >= deadline or (settled is not None and now >= settled):
                within = f"{SIMULATION_SETTLE_S:g} s (a simulation of {have} nodes)" if settled else ""
                within = within or f"{self.fed.wait_clients_s:g} s"
                raise EngineError(
                    f"federated.clients: only {have} of {need} client nodes connected within {within}"
                    f" ({need - have} missing); start them or lower federated.clients"
                    + ("" if settled else " (federated.wait_clients_s sets the wait)")
                )
            time.sleep(0.2)

    def replies(self) -> list[int]:
        """Return the replies aggregated in each round run so far (0 for a failed round)."""
        done = [r for k, r in sorted(self.history.rounds.items()) if k > 0]
        return [0 if r.failed else r.train_replies for r in done]

    def before_round(self, server_round: int) -> bool:
        """Return False when the round could take epsilon past the budget; raise after too many failures."""
        failed = [k for k, r in self.history.rounds.items() if k > 0 and r.failed]
        if len(failed) > self.fed.max_failed_rounds:
            raise EngineError(
                f"federated.max_failed_rounds: {len(failed)} rounds ({', '.join(map(str, sorted(failed)))}) aggregated"
                f" fewer than min_train_clients {self.fed.min_train_clients} clients (limit"
                f" {self.fed.max_failed_rounds}); the run stopped after round {server_round - 1}"
            )
        plan = self.plan
        if not plan.on or plan.target_epsilon is None:
            return True
        worst = plan.epsilon_worst_next(self.replies())
        if worst > plan.target_epsilon + 1e-9:
            plan.budget_stop = True
            self.job.progress.note(
                f"privacy budget: round {server_round} could take epsilon to {worst:.4g} > target_epsilon"
                f" {plan.target_epsilon:g} ({plan.accountant}); training stopped after round {server_round - 1}"
            )
            return False
        return True

    def after_round(self, server_round: int) -> None:
        """Mark the round failed when it aggregated too few clients; record epsilon spent so far."""
        rec = self.history.at(server_round)
        rec.failed = rec.train_replies < self.plan.min_replies
        if rec.failed:
            self.job.progress.warn(
                f"round {server_round} failed: {rec.train_replies} of {self.plan.clients_per_round} clients aggregated"
                f" ({self.plan.clients_per_round - rec.failed_train} answered), fewer than min_train_clients"
                f" {self.plan.min_replies}; the global model is unchanged"
            )
        if self.plan.on:
            replies = self.replies() if self.plan.dp == "distributed" else None
            rounds = len(self.replies())
            rec.epsilon = {a: round(self.plan.epsilon_after(rounds, a, replies), 6) for a in ("rdp", "pld")}
