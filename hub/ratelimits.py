"""Per-key request rates: what ``RESMON_RATE_LIMIT_*`` say, parsed and checked at load.

A rate is written as the :mod:`limits` library reads it: ``100/second``,
``6000/minute``, ``10 per 5 seconds``; several separated by ``;`` all apply
(``20/second;600/minute``). ``off`` means no limit. Each key gets the rate
of the route's scope, unless ``RESMON_RATE_LIMIT_KEYS`` names its id
(``<key id>=<rate>``, separated by commas or spaces): then that rate holds
for that key on every route, in one shared budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec
from limits import RateLimitItem, parse_many

from ._exceptions import ConfigError

__all__ = ["RateLimits", "parse_rate"]

_OFF = frozenset({"off", "none", "0", "unlimited"})
_KEY_ID = re.compile(r"[0-9a-fA-F-]{36}")


def parse_rate(variable: str, value: str) -> tuple[RateLimitItem, ...]:
    """The limits ``value`` says (empty for ``off``); ConfigError naming ``variable``."""
    text = value.strip()
    if text.lower() in _OFF:
        return ()
    try:
        return tuple(parse_many(text))
    except ValueError:
        raise ConfigError(
            f"{variable}={value!r}: expected a rate such as 100/second or 6000/minute "
            "(several joined by ';'), or off"
        ) from None


class RateLimits(msgspec.Struct, frozen=True):
    """The limits per scope, and the keys with limits of their own."""

    scopes: dict[str, tuple[RateLimitItem, ...]]
    keys: dict[str, tuple[RateLimitItem, ...]]

    @classmethod
    def parse(cls, scopes: Mapping[str, tuple[str, str]], keys: tuple[str, str]) -> RateLimits:
        """``scopes``: scope -> (variable, value); ``keys``: (variable, value)."""
        parsed = {scope: parse_rate(var, value) for scope, (var, value) in scopes.items()}
        variable, value = keys
        own: dict[str, tuple[RateLimitItem, ...]] = {}
        for part in re.split(r"[,\s]+", value.strip()):
            if not part:
                continue
            key_id, sep, rate = part.partition("=")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise ConfigError(
                    f"{variable}: {part!r} is not <key id>=<rate> "
                    "(the id as `resmon keys list` shows it)"
                )
            own[key_id.lower()] = parse_rate(f"{variable} ({key_id})", rate)
        return cls(scopes=parsed, keys=own)

    def of(self, key_id: str, scope: str) -> tuple[str, tuple[RateLimitItem, ...]]:
        """(the budget's name, its limits) for ``key_id`` on a route of ``scope``."""
        own = self.keys.get(key_id.lower())
        if own is not None:
            return "key", own
        return scope, self.scopes.get(scope, ())
