"""Progress while a scenario runs: a rich live table on a terminal, log lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._scenario import Scenario
from ._world import World

__all__ = ["Progress"]


class Progress:
    """``with Progress(...) as p: p.update(point, totals, world)``."""

    def __init__(self, scenario: Scenario, *, enabled: bool, say: Callable[[str], None]) -> None:
        self._scenario = scenario
        self._enabled = enabled
        self._say = say
        self._live: Any = None
        self._last_line = 0.0

    def __enter__(self) -> Progress:
        if self._enabled:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            if console.is_terminal:
                self._live = Live(console=console, refresh_per_second=4, transient=False)
                self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def update(self, point: dict[str, float], totals: dict[str, int], world: World) -> None:
        s = self._scenario
        end = s.warmup_s + s.traffic_s
        t = point["t"]
        phase = "warmup" if t < s.warmup_s else "traffic" if t < end else "drain"
        lag = "?" if point["lag"] < 0 else f"{point['lag']:,.0f}"
        fields = [
            ("scenario", f"{s.name} ({phase}, t={t:,.1f}s of {end:g}s)"),
            ("polls (errors)", f"{point['polls']:,.0f} ({point['poll_errors']:,.0f})"),
            ("readings produced/acked", f"{point['produced']:,.0f} / {point['acked']:,.0f}"),
            ("readings consumed", f"{point['consumed']:,.0f}"),
            ("agent buffers / lag", f"{point['buffered']:,.0f} / {lag}"),
            (
                "resources billing truth",
                f"{totals['exact_matching']:,} of {totals['exact']:,} exact",
            ),
        ]
        if self._live is not None:
            from rich.table import Table

            table = Table(title="resmon loadtest", show_header=False)
            for k, v in fields:
                table.add_row(k, v)
            self._live.update(table)
        elif self._enabled and time.monotonic() - self._last_line >= 5:
            self._last_line = time.monotonic()
            self._say("[loadtest] " + "; ".join(f"{k} {v}" for k, v in fields))
