"""The checks every reading goes through: thresholds, anomaly, forecast (pure, no I/O).

- :mod:`.thresholds`: exact integer threshold episodes with hysteresis;
- :mod:`.anomaly`: the z-score against an exponentially decayed history;
- :mod:`.forecast`: will the period's total reach the limit, and how sure;
- :mod:`.reading`: the three in order for one reading (the reference the
  actor's inlined batch path is held to);
- :mod:`.stats`, :mod:`.change`, :mod:`.settings`: the state they keep, the
  transitions they report, the settings they are tuned with.
"""

from .change import Change
from .settings import CheckSettings
from .stats import Stats
from .thresholds import Level, Transition, evaluate, percent_to_bp

__all__ = ["Change", "CheckSettings", "Level", "Stats", "Transition", "evaluate", "percent_to_bp"]
