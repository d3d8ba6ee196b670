"""Checks an actor runs on each reading: thresholds now; anomaly and forecast later."""

from .thresholds import Level, Transition, evaluate, percent_to_bp

__all__ = ["Level", "Transition", "evaluate", "percent_to_bp"]
