"""Pure pieces of the notifier: backoff, Retry-After, routing rules, the public surface."""

from __future__ import annotations

import email.utils
import importlib
import time

import pytest
from _notify_fakes import notify_config

from hub.notify import ChannelPrefs, Preferences
from hub.notify._exceptions import DeliveryError
from hub.notify.channels.base import check_response, retry_after
from hub.notify.router import plan
from hub.notify.worker import backoff


def test_backoff_grows_exponentially_with_jitter_and_respects_the_cap() -> None:
    for attempt, top in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)):
        delays = [backoff(attempt, 1.0, 30.0) for _ in range(200)]
        assert all(top / 2 <= d <= top for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_retry_after_wins_when_longer_than_the_backoff() -> None:
    assert backoff(1, 0.05, 60.0, retry_after=7.0) == 7.0
    assert backoff(1, 0.05, 5.0, retry_after=3600.0) == 5.0  # capped


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("12") == 12.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after(date) or 0) <= 31
    assert retry_after("soon") is None
    assert retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (404, False),
        (410, False),
        (302, False),
    ],
)
def test_which_http_answers_are_retried(status: int, retryable: bool) -> None:
    with pytest.raises(DeliveryError) as info:
        check_response(status, {"Retry-After": "3"}, "slack: webhook")
    assert info.value.retryable is retryable
    assert info.value.status == status


def test_routing_follows_the_plans_severity_rules() -> None:
    prefs = Preferences(
        email=ChannelPrefs(enabled=True, recipients=["a@b.example"]),
        sms=ChannelPrefs(
            enabled=True, min_severity="CRITICAL", recipients=["+4915112345678", "+4915187654321"]
        ),
        slack=ChannelPrefs(enabled=True, min_severity="MEDIUM", url="https://hooks.slack.com/x"),
        send_resolved=False,
    )
    config = notify_config()
    assert plan("RAISED", "LOW", prefs, config) == [("email", "")]
    assert plan("RAISED", "HIGH", prefs, config) == [("email", ""), ("slack", "")]
    assert plan("ESCALATED", "CRITICAL", prefs, config) == [
        ("email", ""),
        ("sms", "+4915112345678"),
        ("sms", "+4915187654321"),
        ("slack", ""),
    ]
    assert plan("RESOLVED", "CRITICAL", prefs, config) == []  # send_resolved off
    assert plan("SUPERSEDED", "HIGH", prefs, config) == []


@pytest.mark.parametrize(
    "module",
    [
        "hub.notify",
        "hub.notify.channels",
        "hub.notify.ssrf",
        "hub.notify.preferences",
        "hub.notify.router",
        "hub.notify.log",
        "hub.notify.worker",
        "hub.notify.settings",
        "hub.notify.message",
        "hub.alerts.lifecycle",
        "hub.api.alerts",
    ],
)
def test_every_public_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_retry_after_is_capped_at_a_day_so_any_answer_can_be_stored() -> None:
    """An uncapped 10,000,000 s overflowed the attempt's column: the row was resent forever."""
    assert retry_after("10000000") == 86_400.0
    assert retry_after("Fri, 01 Jan 2100 00:00:00 GMT") == 86_400.0
    assert retry_after("86399") == 86_399.0


def test_default_worker_ids_differ_even_for_the_same_host_and_pid() -> None:
    """Containers on one host can all be pid 1 with one hostname: ids must still differ."""
    from hub.notify import NotifyConfig

    a, b = NotifyConfig().worker_id, NotifyConfig().worker_id
    assert a != b
    assert a.rsplit(":", 1)[0] == b.rsplit(":", 1)[0]  # host:pid stays readable
