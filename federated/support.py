"""What ``scaleclf federate`` trains: each federated model's implementation in words, or why a model is refused."""

from __future__ import annotations

from federated.models import FEDERATED_MODELS

IMPLEMENTATIONS: dict[str, str] = {
    "logistic_regression": "numpy linear layer (logistic loss), minibatch Adam on clients, parameter averaging",
    "linear_svm": "numpy linear layer (squared hinge) + shared Platt scaling, parameter averaging",
    "mlp": "numpy MLP (ReLU), minibatch Adam on clients, parameter averaging",
    "xgboost": "xgboost boosters, Flower tree bagging or cyclic boosting (binary only)",
}
# The strategies average parameter vectors; these models have none to average.
REFUSAL = "no parameter averaging for trees, forests, naive Bayes or kernel feature maps"


def federated_models() -> tuple[dict[str, str], dict[str, str]]:
    """Return (model -> federated implementation, refused model -> reason) over the catalog."""
    from pipelines.models.catalog import CATALOG

    supported = {name: IMPLEMENTATIONS[name] for name in FEDERATED_MODELS}
    return supported, {name: REFUSAL for name in CATALOG if name not in supported}
