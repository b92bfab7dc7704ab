"""The job spec: pydantic models, YAML loading, ``--set`` overrides and the JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.engines import ENGINE_NAMES
from pipelines.errors import ConfigError


class SpecYAMLError(yaml.YAMLError):
    """A YAML construct a job spec refuses (a duplicate key, an alias); ``str`` is the reason."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class SpecLoader(yaml.SafeLoader):
    """YAML loader for job specs: YAML 1.2 booleans and floats, no duplicate keys, no aliases.

    Only true/false are booleans, so ``positive_label: yes`` stays "yes"; ``1e-5``, ``.5`` and
    ``15e-2`` are floats (YAML 1.1 wants a dot and a signed exponent). A duplicate key would
    silently let the last one win, and an alias lets a few hundred bytes expand to millions of
    items (an "alias bomb"): both are refused with the line they are on.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Refuse an alias (``*name``) before it is expanded."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpecYAMLError(f"YAML aliases (*{event.anchor}) are not allowed in a job spec", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Refuse a mapping that repeats a key."""
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the constructor below says so
                    continue
                if repeated:
                    raise SpecYAMLError(f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[0-9][0-9_]*[eE][-+]?[0-9]+)
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Return the data of a YAML document read with ``SpecLoader``."""
    return yaml.load(text, Loader=SpecLoader)


class _Section(BaseModel):
    """Base of every spec section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SplitSpec(_Section):
    """Fractions of the deterministic train / valid / test split."""

    train: float = Field(0.7, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + valid + test must be 1, got {total:g}")
        return self


class DataSpec(_Section):
    """Where the rows come from and which column is the label."""

    source: str = Field(description="Parquet/CSV path, directory, glob or URI; builtin:NAME; synthetic:NAME")
    test_source: str | None = Field(None, description="optional fixed test set; then the split is train/valid only")
    label: str = Field("label", description="label column")
    positive_label: str | int | float | bool | None = Field(None, description="positive class for binary string labels")
    rows: int | None = Field(None, ge=1, description="rows to generate for synthetic: sources")
    generator_seed: int = Field(0, ge=0, description="seed of synthetic: generators (not of the split)")
    format: Literal["auto", "parquet", "csv"] = "auto"
    key: str | None = Field(None, description="row-key column; default: a hash of the row's values")
    features: list[str] | None = Field(None, description="feature columns; default: all but label/key/drop")
    categorical: list[str] = Field(default_factory=list, description="columns forced categorical")
    drop: list[str] = Field(default_factory=list, description="columns to ignore")
    max_categories: int = Field(50, ge=1, description="most frequent categories kept per column; rest -> other")
    allow_missing_columns: bool = Field(
        False, description="a column missing from some files of a multi-file source is read as missing values"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)

    @field_validator("source")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class ModelSpec(_Section):
    """Which catalog model to train, with which parameters."""

    name: str = Field(description="catalog model name")
    params: dict[str, Any] = Field(default_factory=dict)
    class_weight: Literal["balanced"] | dict[str | int | float | bool, float] | None = Field(
        None, description="balanced, or label value -> weight (> 0); keys match labels of any type"
    )
    calibration: Literal["none", "sigmoid", "isotonic"] = "none"

    @field_validator("class_weight")
    @classmethod
    def _positive_weights(cls, v: Any) -> Any:
        if isinstance(v, dict):
            if not v:
                raise ValueError("give at least one label: weight, or balanced")
            for label, weight in v.items():
                if not weight > 0:
                    raise ValueError(f"the weight of label {label!r} must be > 0, got {weight!r}")
        return v


class EngineSpec(_Section):
    """Which engine runs the job and how to reach its cluster."""

    name: str = Field(
        "local",
        json_schema_extra={"enum": [*ENGINE_NAMES, "auto"]},
        description="engine to run on; auto: the fastest the cost model expects to fit in resources.memory",
    )
    address: str | None = Field(None, description="Spark master URL, Dask scheduler or Ray address")
    workers: int | None = Field(None, ge=1, description="workers / partitions / Spark cores")
    options: dict[str, Any] = Field(default_factory=dict, description="engine-specific settings")


SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20}
SIZE_UNITS |= {"g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(value: int | str) -> int:
    """Return a byte count from an int or a text such as ``8GiB``, ``500MB`` or ``2g``."""
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if match is None or match.group(2).lower() not in SIZE_UNITS:
            raise ValueError(f"expected a size such as 8GiB, 500MB or a byte count, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    if number <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return int(number * SIZE_UNITS[unit])


class ResourcesSpec(_Section):
    """What the job may use of the machine it runs on."""

    memory: int | str | None = Field(
        None, description="memory the job may use, e.g. '8GiB' (default: 80 % of the memory available at start)"
    )

    @field_validator("memory")
    @classmethod
    def _size(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_size(value)
        return value

    @property
    def memory_bytes(self) -> int:
        """Return ``memory`` in bytes; unset: 80 % of the memory available now, or of this process's
        RLIMIT_DATA when that is lower (a job run under a cap plans for the cap)."""
        if self.memory is not None:
            return parse_size(self.memory)
        import resource

        import psutil

        available = psutil.virtual_memory().available
        soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
        if soft != resource.RLIM_INFINITY:
            available = min(available, soft)
        return int(0.8 * available)


class TuningSpec(_Section):
    """Hyper-parameter search over model.params, scored on the validation split."""

    enabled: bool = False
    method: Literal["grid", "random"] = "random"
    n_trials: int = Field(10, ge=1)
    metric: Literal["auc", "pr_auc", "log_loss", "accuracy", "f1", "balanced_accuracy"] = "auc"
    parallelism: int = Field(1, ge=1)
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="param -> list of values, or {low, high, log, int} for a range",
    )


class ThresholdSpec(_Section):
    """How the binary decision threshold is chosen (on the validation split)."""

    strategy: Literal["fixed", "max_f1", "cost", "target_recall"] = "fixed"
    value: float = Field(0.5, ge=0, le=1)
    cost_fp: float = Field(1.0, ge=0)
    cost_fn: float = Field(1.0, ge=0)
    target_recall: float = Field(0.9, gt=0, le=1)

    @model_validator(mode="after")
    def _some_cost(self) -> ThresholdSpec:
        if self.cost_fp == 0 and self.cost_fn == 0:
            raise ValueError("cost_fp and cost_fn are both 0: every threshold costs nothing; give a positive cost")
        return self


class EvaluationSpec(_Section):
    """Settings of the shared evaluation."""

    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    ece_bins: int = Field(15, ge=2)


class OutputSpec(_Section):
    """Where the run directory goes and what is written beside the metrics."""

    dir: str = Field("runs", description="parent directory of run directories")
    run_name: str | None = Field(None, description="run directory name; default name-model-engine-time")
    report: bool = True
    mlflow: bool = False
    mlflow_experiment: str = "scaleclf"

    @field_validator("run_name")
    @classmethod
    def _inside_dir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        bad = not v.strip() or v.startswith(".") or any(c in v for c in "/\\\0") or any(ord(c) < 32 for c in v)
        if bad:
            raise ValueError(
                "must be one directory name inside output.dir (no '/', no leading '.', not '..' or absolute)"
            )
        return v


class PartitionSpec(_Section):
    """How the non-test rows are divided among the federated clients."""

    scheme: Literal["iid", "dirichlet", "pathological", "quantity", "natural"] = "iid"
    alpha: float = Field(0.5, gt=0, description="dirichlet: label concentration; quantity: size concentration")
    labels_per_client: int = Field(2, ge=1, description="pathological: classes each client holds")
    column: str | None = Field(None, description="natural: the column whose values name the clients")
    min_rows: int = Field(10, ge=0, description="dirichlet: smallest partition accepted (flwr-datasets resamples)")


class SimulationSpec(_Section):
    """How the local Flower simulation is sized on this machine."""

    cpus: int | None = Field(None, ge=1, description="CPUs given to the simulation's own Ray; default: every core")
    cpus_per_client: float = Field(1.0, gt=0, description="CPUs per ClientApp; cpus / cpus_per_client run at once")
    object_store_mb: int = Field(256, ge=80, description="Ray object store of the simulation (MiB)")


class SecureAggregationSpec(_Section):
    """SecAgg+ (Flower's SecAggPlusWorkflow): the server learns only the sum of the clients' models."""

    enabled: bool = Field(False, description="aggregate with SecAgg+ (fedavg/fedprox on linear models and mlp)")
    num_shares: int = Field(3, ge=3, description="secret shares of each client's keys (odd, at most the clients)")
    reconstruction_threshold: int = Field(
        2, ge=2, description="shares needed to reconstruct a client's masks (below num_shares)"
    )
    clipping_range: float = Field(8.0, gt=0, description="model values are clipped to +-this before quantization")
    quantization_range: int = Field(2**22, ge=2, description="integers each value is quantized to")

    @model_validator(mode="after")
    def _shares_odd(self) -> SecureAggregationSpec:
        if self.num_shares % 2 == 0:
            raise ValueError(f"num_shares must be odd (SecAgg+), got {self.num_shares}")
        if self.reconstruction_threshold >= self.num_shares:
            raise ValueError(
                f"reconstruction_threshold ({self.reconstruction_threshold}) must be below num_shares"
                f" ({self.num_shares})"
            )
        return self


class PrivacySpec(_Section):
    """Secure aggregation and differential privacy of a federated run, accounted with dp-accounting."""

    secure_aggregation: SecureAggregationSpec = Field(default_factory=SecureAggregationSpec)
    dp: Literal["none", "central", "distributed", "local", "dpsgd"] = Field(
        "none",
        description="central: server clips and noises client updates; distributed: clients add noise shares"
        " under SecAgg+; local: each client noises its own update; dpsgd: per-example DP-SGD in clients",
    )
    noise_multiplier: float = Field(1.0, gt=0, description="Gaussian noise std / clipping_norm")
    clipping_norm: float = Field(1.0, gt=0, description="L2 bound of a client update (dpsgd: of a row's gradient)")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the (epsilon, delta) guarantee")
    target_epsilon: float | None = Field(
        None, gt=0, description="budget: training stops before a round would take epsilon past it"
    )
    accountant: Literal["rdp", "pld"] = Field("rdp", description="accountant that enforces target_epsilon")


class FederatedSpec(_Section):
    """Settings of ``scaleclf federate``: clients, rounds, strategy, partitioning and local training."""

    clients: int = Field(10, ge=2, description="number of simulated clients")
    rounds: int = Field(10, ge=1, description="federated rounds")
    strategy: Literal[
        "fedavg", "fedprox", "fedadam", "fedavgm", "fedtrimmedavg", "krum", "fedxgb_bagging", "fedxgb_cyclic"
    ] = "fedavg"
    execution: Literal["flower", "batched"] = Field(
        "flower",
        description="flower: every client a ClientApp in Flower's simulation; batched: the clients of a round"
        " trained together in NumPy in this process (same model; fedavg/fedprox on networks, no privacy)",
    )
    fraction_train: float = Field(1.0, gt=0, le=1, description="share of clients sampled for training each round")
    fraction_evaluate: float = Field(1.0, ge=0, le=1, description="share of clients sampled for federated evaluation")
    min_train_clients: int = Field(2, ge=1)
    min_evaluate_clients: int = Field(2, ge=0)
    max_failed_rounds: int = Field(
        2, ge=0, description="rounds aggregating fewer than min_train_clients before the run stops (exit 4)"
    )
    wait_clients_s: float = Field(60.0, gt=0, description="seconds the server waits for all clients before round 1")
    local_epochs: int = Field(1, ge=1, description="passes over the local train rows per round (xgboost: trees)")
    batch_size: int = Field(32, ge=1, description="local minibatch rows")
    learning_rate: float = Field(0.01, gt=0, description="local Adam step size")
    proximal_mu: float = Field(0.01, ge=0, description="fedprox: weight of the proximal term")
    server_learning_rate: float | None = Field(
        None, gt=0, description="server step: fedavgm (default 1.0), fedadam's eta (default 0.01)"
    )
    server_momentum: float = Field(0.9, ge=0, lt=1, description="fedavgm: server momentum")
    trim_beta: float = Field(0.2, ge=0, lt=0.5, description="fedtrimmedavg: share trimmed at each end")
    malicious_clients: int = Field(0, ge=0, description="krum: clients assumed malicious")
    partition: PartitionSpec = Field(default_factory=PartitionSpec)
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    preprocess: Literal["merged", "given"] = Field(
        "merged",
        description="merged: preprocessing statistics and label classes from the merge of the clients' raw"
        " profiles; given: read from federated.preprocess_from (no client statistics reach the fit)",
    )
    preprocess_from: str | None = Field(
        None, description="preprocess: given: JSON file with the preprocessing statistics and label classes"
    )
    centralized_baseline: bool = Field(False, description="also train the model on the pooled rows and report the gap")
    fail_clients: list[int] = Field(
        default_factory=list, description="testing: client ids whose ClientApp raises in fail_rounds"
    )
    fail_rounds: list[int] = Field(default_factory=list, description="testing: rounds in which fail_clients raise")

    @model_validator(mode="after")
    def _clients_fit(self) -> FederatedSpec:
        if self.min_train_clients > self.clients:
            raise ValueError(f"min_train_clients ({self.min_train_clients}) exceeds clients ({self.clients})")
        if self.preprocess == "given" and not self.preprocess_from:
            raise ValueError("preprocess_from: required with preprocess: given (a JSON file, docs/privacy.md)")
        if self.preprocess == "merged" and self.preprocess_from:
            raise ValueError("preprocess_from: only with preprocess: given")
        bad = [c for c in self.fail_clients if not 0 <= c < self.clients]
        if bad:
            raise ValueError(f"fail_clients: client {bad[0]} does not exist (0..{self.clients - 1})")
        return self


class JobSpec(_Section):
    """A whole job: data, model, engine, tuning, evaluation and output."""

    name: str = "job"
    seed: int = Field(42, ge=0)
    data: DataSpec
    model: ModelSpec
    engine: EngineSpec = Field(default_factory=EngineSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    federated: FederatedSpec | None = Field(None, description="settings of scaleclf federate")

    @model_validator(mode="after")
    def _model_and_engine_fit(self) -> JobSpec:
        # Imported here: the catalog imports this module for its types.
        from pipelines.engines import check_engine_options
        from pipelines.models.catalog import check_model_spec

        if self.engine.name == "auto":
            from pipelines.cost import candidates

            if not candidates(self):
                raise ConfigError(
                    f"config error: engine.name: auto: no engine runs {self.model.name} with these"
                    " model.params and engine.options"
                )
            return self
        check_model_spec(self.model, self.engine.name, self.tuning)
        check_engine_options(self.engine.name, self.engine.options)
        return self

    def to_yaml(self) -> str:
        """Return the resolved spec as YAML (every default filled in), secrets redacted (:func:`redact`)."""
        return yaml.safe_dump(self.public_dump(), sort_keys=False)

    def public_dump(self) -> dict[str, Any]:
        """Return the spec as JSON-typed data with secrets redacted: what is written or logged anywhere."""
        return redact(self.model_dump(mode="json"))

    def without_redacted(self) -> JobSpec:
        """Return the spec without the engine options a written spec holds as ``***`` (the secrets it left out)."""
        options = {k: v for k, v in self.engine.options.items() if v != REDACTED}
        return self.model_copy(update={"engine": self.engine.model_copy(update={"options": options})})


REDACTED = "***"
# Words that make a key a secret wherever they stand in it; "key" does only as the last word of a
# longer name (secret.key, access_key, apiKey), so that data.key, the row-key column, and keep or
# max_features are not secrets.
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "credential",
        "credentials",
        "apikey",
        "private",
    }
)


def key_words(key: str) -> list[str]:
    """Return the lower-case words of a key: split at dots, dashes, underscores and camelCase humps."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(key))
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str) -> bool:
    """Return True when a key names a secret (password, secret, token, credential, ..., or a *.key)."""
    words = key_words(key)
    return any(w in SECRET_WORDS for w in words) or (len(words) > 1 and words[-1] == "key")


def redact(value: Any) -> Any:
    """Return ``value`` with the value of every secret-looking key replaced by ``***`` (any depth),
    and a password in a URL (``scheme://user:password@host``) replaced too."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        return re.sub(r"(://[^/@:\s]*):[^/@\s]+@", rf"\1:{REDACTED}@", value)
    return value


def secret_values(spec: JobSpec) -> list[str]:
    """Return the secret values a spec holds (to keep them off command lines and out of files)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if is_secret_key(k) and isinstance(v, str | int | float) and not isinstance(v, bool):
                    found.append(str(v))
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec.model_dump(mode="json"))
    return [v for v in found if v and v != REDACTED]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Return the dotted key path and the YAML-typed value of one ``KEY=VALUE`` override."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. model.params.C=0.5")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: the key is empty")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except SpecYAMLError as exc:
        raise ConfigError(f"--set {key}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})") from exc
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``KEY=VALUE`` override set at its dotted path."""
    out = json.loads(json.dumps(raw))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {'.'.join(path)}: {where} is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Return the mapping stored in a YAML job spec file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        raw = load_yaml(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = exc.problem if isinstance(exc, SpecYAMLError) else "invalid YAML"
        raise ConfigError(f"config file {p}{where}: {reason}") from None
    if raw is None:
        raise ConfigError(f"config file {p} is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def build_spec(raw: dict[str, Any]) -> JobSpec:
    """Return the validated JobSpec for a raw mapping, or raise a one-line ConfigError."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_spec(path: str | Path, overrides: list[str] | None = None, *, engine: str | None = None) -> JobSpec:
    """Return the validated spec from a YAML file with ``--set`` overrides applied."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    if engine is not None:
        raw.setdefault("engine", {})
        if not isinstance(raw["engine"], dict):
            raise ConfigError("engine: expected a section")
        raw["engine"]["name"] = engine
    return build_spec(raw)


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the job spec."""
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "scaleclf job spec"
    return schema


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Return the keys allowed in the section at ``loc`` (the parent of the bad key)."""
    model: type[BaseModel] | None = JobSpec
    for part in loc:
        if model is None:
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        if not isinstance(annotation, type):  # an optional section, ``Section | None``
            sections = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = sections[0] if len(sections) == 1 else annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def describe_validation_error(exc: ValidationError) -> str:
    """Return one line naming the first bad key of a pydantic error and what is allowed."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    key = ".".join(str(p) for p in loc) or "spec"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"config error: {key}: unknown key{hint}"
    if kind == "missing":
        return f"config error: {key}: required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"config error: {key}: {err['input']!r} is not allowed (allowed: {expected})"
    msg = err["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if key == "spec":
            return f"config error: {msg}"
    return f"config error: {key}: {msg} (got {_short(err.get('input'))})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
