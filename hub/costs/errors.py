"""The one error the pricing code raises on purpose."""

from __future__ import annotations

__all__ = ["PricingError"]


class PricingError(ValueError):
    """A price model, a usage figure or a sample is unusable; the message names it.

    ``where`` is the field or item at fault (``tiers[2].upTo``, ``samples[17]``),
    so a caller can point an operator at the exact place to fix.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
