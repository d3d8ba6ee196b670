"""Who gets told what, how: notification preferences per customer and tenant default.

The effective preferences of a customer are the customer's own row if there is
one, else its tenant's default, else :data:`BUILTIN` (nothing is sent). Per
channel: enabled, recipients and the minimum severity (for example SMS only
for CRITICAL, Slack not for LOW). Plus quiet hours in a time zone (notifications
below CRITICAL wait until they end), the repeat interval for alerts nobody
acknowledged, whether resolutions are sent, and per-tenant hourly rate limits
per channel (SMS costs money).

Stored as JSONB (validated here, camelCase on the wire). The API shows webhook
URLs masked and the HMAC secret never; a PUT that sends a masked value back
keeps the stored one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .._exceptions import NotFoundError, storage_errors
from ..storage.provision import DEFAULT_TENANT, Executor
from ._exceptions import PreferencesError, UnsafeURLError
from .ssrf import Network, check_url, mask_url

__all__ = [
    "BUILTIN",
    "CHANNELS",
    "SEVERITIES",
    "ChannelPrefs",
    "Preferences",
    "QuietHours",
    "Stored",
    "decode_preferences",
    "effective_preferences",
    "masked",
    "save_preferences",
    "severity_rank",
    "stored_preferences",
]

SEVERITIES: Final = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
CHANNELS: Final = ("email", "sms", "slack", "webhook")
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
_EMAIL: Final = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_PHONE: Final = re.compile(r"^\+[1-9]\d{6,14}$")
_HHMM: Final = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_SECRET_MASK: Final = "***"  # noqa: S105 (the mask, not a password)


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


class ChannelPrefs(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    enabled: bool = False
    min_severity: Severity = "LOW"
    #: email addresses (email), E.164 phone numbers (sms)
    recipients: list[str] = msgspec.field(default_factory=list)
    #: slack / webhook: where to POST (SSRF-checked); slack falls back to SLACK_WEBHOOK_URL
    url: str | None = None
    #: webhook: HMAC-SHA256 key for the X-Resmon-Signature header
    secret: str | None = None


class QuietHours(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    start: str  # "22:00"
    end: str  # "07:00"
    timezone: str = "UTC"


class Preferences(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    email: ChannelPrefs = ChannelPrefs(enabled=True, min_severity="LOW")
    sms: ChannelPrefs = ChannelPrefs(min_severity="CRITICAL")
    slack: ChannelPrefs = ChannelPrefs(min_severity="MEDIUM")
    webhook: ChannelPrefs = ChannelPrefs(min_severity="LOW")
    quiet_hours: QuietHours | None = None
    #: resend an unacknowledged alert this often (None: never)
    repeat_interval_minutes: int | None = 240
    send_resolved: bool = True
    #: tenant default only: most messages per channel per hour for the whole tenant
    rate_limits_per_hour: dict[str, int] = msgspec.field(default_factory=dict)

    def channel(self, name: str) -> ChannelPrefs:
        prefs: ChannelPrefs = getattr(self, name)
        return prefs

    def wants(self, channel: str, severity: str) -> bool:
        prefs = self.channel(channel)
        return prefs.enabled and severity_rank(severity) >= severity_rank(prefs.min_severity)

    def quiet_until(self, now: dt.datetime) -> dt.datetime | None:
        """End of the quiet hours ``now`` falls in, else None."""
        q = self.quiet_hours
        if q is None:
            return None
        local = now.astimezone(ZoneInfo(q.timezone))
        start = dt.time.fromisoformat(q.start)
        end = dt.time.fromisoformat(q.end)
        t = local.time()
        inside = (start <= t < end) if start <= end else (t >= start or t < end)
        if not inside or start == end:
            return None
        day = local.date() if t < end else local.date() + dt.timedelta(days=1)
        return dt.datetime.combine(day, end, tzinfo=local.tzinfo).astimezone(dt.UTC)


BUILTIN: Final = Preferences(email=ChannelPrefs(enabled=False))


class Stored(msgspec.Struct, frozen=True, rename="camel"):
    """Preferences as the API shows them: masked, with where they came from."""

    scope: str  # customer, tenant, builtin
    preferences: Preferences
    updated_by: str | None = None
    updated_at: dt.datetime | None = None


_decoder = msgspec.json.Decoder(Preferences)


def validate(prefs: Preferences, allow: tuple[Network, ...] = ()) -> None:
    """Raise PreferencesError (with the JSON path) for anything a send would trip over."""
    for addr in prefs.email.recipients:
        if not _EMAIL.match(addr):
            raise PreferencesError(f"not an email address: {addr!r}", "$.email.recipients")
    for phone in prefs.sms.recipients:
        if not _PHONE.match(phone):
            raise PreferencesError(
                f"not an E.164 phone number (+4930123456): {phone!r}", "$.sms.recipients"
            )
    for name in ("slack", "webhook"):
        url = prefs.channel(name).url
        if url:
            try:
                check_url(url, allow)
            except UnsafeURLError as exc:
                raise PreferencesError(str(exc), f"$.{name}.url") from None
    if prefs.webhook.enabled and not prefs.webhook.url:
        raise PreferencesError("the webhook channel needs a url", "$.webhook.url")
    if q := prefs.quiet_hours:
        for field, value in (("start", q.start), ("end", q.end)):
            if not _HHMM.match(value):
                raise PreferencesError(f"expected HH:MM, got {value!r}", f"$.quietHours.{field}")
        try:
            ZoneInfo(q.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PreferencesError(
                f"unknown time zone {q.timezone!r}", "$.quietHours.timezone"
            ) from None
    if prefs.repeat_interval_minutes is not None and prefs.repeat_interval_minutes < 1:
        raise PreferencesError("must be >= 1 minute or null", "$.repeatIntervalMinutes")
    for channel, limit in prefs.rate_limits_per_hour.items():
        if channel not in CHANNELS or limit < 0:
            raise PreferencesError(
                f"expected channel -> count >= 0 for {sorted(CHANNELS)}", "$.rateLimitsPerHour"
            )


def decode_preferences(raw: bytes, allow: tuple[Network, ...] = ()) -> Preferences:
    try:
        prefs = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        where = re.search(r"at `(\$[^`]*)`", str(exc))
        raise PreferencesError(str(exc), where.group(1) if where else "$") from None
    except msgspec.DecodeError as exc:
        raise PreferencesError(f"body is not valid JSON: {exc}") from None
    validate(prefs, allow)
    return prefs


def masked(prefs: Preferences) -> Preferences:
    """``prefs`` safe to show: URLs cut to scheme://host/***, secret replaced."""

    def m(c: ChannelPrefs) -> ChannelPrefs:
        return msgspec.structs.replace(
            c, url=mask_url(c.url), secret=_SECRET_MASK if c.secret else None
        )

    return msgspec.structs.replace(prefs, slack=m(prefs.slack), webhook=m(prefs.webhook))


def _keep_secrets(new: Preferences, old: Preferences | None) -> Preferences:
    """A masked URL / secret sent back unchanged means: keep the stored one."""
    if old is None:
        return new

    def keep(n: ChannelPrefs, o: ChannelPrefs) -> ChannelPrefs:
        url = o.url if n.url and o.url and n.url == mask_url(o.url) else n.url
        secret = o.secret if n.secret == _SECRET_MASK else n.secret
        return msgspec.structs.replace(n, url=url, secret=secret)

    return msgspec.structs.replace(
        new, slack=keep(new.slack, old.slack), webhook=keep(new.webhook, old.webhook)
    )


def _scope_sql(customer_id: str | None) -> tuple[str, str]:
    return (
        ("customer_id = $1", "customer_id")
        if customer_id
        else ("tenant_id = $1::uuid", "tenant_id")
    )


async def _row(db: Executor, *, customer_id: str | None, tenant_id: str | None) -> Any:
    where = "customer_id = $1" if customer_id else "tenant_id = $1::uuid"
    return await db.fetchrow(
        f"SELECT settings, updated_by, updated_at FROM notification_preferences WHERE {where}",  # noqa: S608
        customer_id or tenant_id,
    )


def _load(settings: Any) -> Preferences:
    raw = settings if isinstance(settings, str | bytes) else json.dumps(settings)
    return _decoder.decode(raw)


async def stored_preferences(
    db: Executor, *, customer_id: str | None = None, tenant_id: str | None = None
) -> Stored:
    """The preferences that apply to a customer (or a tenant's default), unmasked."""
    with storage_errors():
        if customer_id is not None:
            tenant = await db.fetchval(
                "SELECT tenant_id::text FROM customers WHERE id = $1", customer_id
            )
            if tenant is None:
                raise NotFoundError(f"customer {customer_id!r} not found")
            row = await _row(db, customer_id=customer_id, tenant_id=None)
            if row is not None:
                return Stored(
                    "customer", _load(row["settings"]), row["updated_by"], row["updated_at"]
                )
            tenant_id = tenant
        tenant_id = tenant_id or DEFAULT_TENANT
        if not await db.fetchval("SELECT 1 FROM tenants WHERE id::text = $1", tenant_id):
            raise NotFoundError(f"tenant {tenant_id!r} not found")
        row = await _row(db, customer_id=None, tenant_id=tenant_id)
    if row is not None:
        return Stored("tenant", _load(row["settings"]), row["updated_by"], row["updated_at"])
    return Stored("builtin", BUILTIN)


async def effective_preferences(db: Executor, customer_id: str) -> Preferences:
    return (await stored_preferences(db, customer_id=customer_id)).preferences


async def save_preferences(
    db: Executor,
    prefs: Preferences,
    *,
    customer_id: str | None = None,
    tenant_id: str | None = None,
    by: str | None = None,
) -> Stored:
    """Replace the customer's (or tenant default's) preferences; returns them stored."""
    with storage_errors():
        old = None
        if customer_id is not None:
            if not await db.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id):
                raise NotFoundError(f"customer {customer_id!r} not found")
            row = await _row(db, customer_id=customer_id, tenant_id=None)
        else:
            tenant_id = tenant_id or DEFAULT_TENANT
            if not await db.fetchval("SELECT 1 FROM tenants WHERE id::text = $1", tenant_id):
                raise NotFoundError(f"tenant {tenant_id!r} not found")
            row = await _row(db, customer_id=None, tenant_id=tenant_id)
        if row is not None:
            old = _load(row["settings"])
        prefs = _keep_secrets(prefs, old)
        settings = msgspec.json.encode(prefs).decode()
        column = "customer_id" if customer_id is not None else "tenant_id"
        cast = "" if customer_id is not None else "::uuid"
        row = await db.fetchrow(
            f"""INSERT INTO notification_preferences ({column}, settings, updated_by)
                VALUES ($1{cast}, $2::jsonb, $3)
                ON CONFLICT ({column}) DO UPDATE SET settings = EXCLUDED.settings,
                    updated_by = EXCLUDED.updated_by, updated_at = now()
                RETURNING updated_by, updated_at""",  # noqa: S608
            customer_id or tenant_id,
            settings,
            by,
        )
    scope = "customer" if customer_id is not None else "tenant"
    return Stored(scope, prefs, row["updated_by"], row["updated_at"])
