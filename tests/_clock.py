"""The one hand-moved clock of the tests: agent, simulator and end-to-end alike."""

from __future__ import annotations

__all__ = ["T0_NS", "ManualClock"]

#: where every test clock starts: 2023-11-14T22:13:20Z, in nanoseconds since the epoch
T0_NS = 1_700_000_000 * 10**9


class ManualClock:
    """Wall-clock time that moves only when the test moves it.

    It holds integer nanoseconds since the epoch (``ns``) and answers them when
    called, the unit the simulated routers count in; ``ms`` (readable and
    settable) and :meth:`seconds` give the same instant to parts that count in
    milliseconds or seconds, so one clock drives all of them in step.
    """

    def __init__(self, start_ns: int = T0_NS) -> None:
        self.ns = start_ns

    def __call__(self) -> int:
        return self.ns

    @property
    def ms(self) -> int:
        return self.ns // 1_000_000

    @ms.setter
    def ms(self, value: int) -> None:
        self.ns = value * 1_000_000

    def now_ms(self) -> int:
        """The time in whole milliseconds: pass ``clock.now_ms`` where a ms clock is wanted."""
        return self.ms

    def seconds(self) -> float:
        return self.ns / 1e9

    def advance(self, seconds: float) -> int:
        """Move ``seconds`` forward (fractions allowed); the new time in nanoseconds."""
        self.ns += round(seconds * 1_000_000_000)
        return self.ns
