"""Scores of generated samples: a registry of metrics (`scorer.METRICS`), feature backbones, toy metrics."""

from gan_cli.metrics.scorer import METRICS, Scorer, n_tag

__all__ = ["METRICS", "Scorer", "n_tag"]
