"""scaleclf library: job spec, data, models, engines, evaluation, orchestration."""

__version__ = "0.1.0"
