"""Pipelines of jobs as Dagster assets: data, train candidates, champion, registry, scoring, drift, retraining."""
