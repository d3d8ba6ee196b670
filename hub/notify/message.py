"""What a notification says: one customer's alerts on one channel, rendered.

A :class:`Message` holds one or more :class:`Item` (grouped alerts of one
customer). Renderers for each channel live here so the text is the same
everywhere: subject, plain text, HTML (email), short text (SMS), Slack blocks
with the severity colour.
"""

from __future__ import annotations

import datetime as dt
import html
from decimal import Decimal
from typing import Any, Final

import msgspec

__all__ = ["SEVERITY_COLOUR", "Item", "Message"]

SEVERITY_COLOUR: Final = {
    "CRITICAL": "#d0021b",
    "HIGH": "#f5a623",
    "MEDIUM": "#f8e71c",
    "LOW": "#4a90e2",
}
_LABEL: Final = {
    "RAISED": "ALERT",
    "ESCALATED": "ESCALATED",
    "ACKNOWLEDGED": "ACKNOWLEDGED",
    "RESOLVED": "RESOLVED",
    "REPEATED": "STILL ACTIVE",
}


class Item(msgspec.Struct, frozen=True):
    """One alert transition to tell someone about."""

    log_id: int
    alert_id: str
    episode_id: str
    transition: str
    severity: str
    alert_type: str
    status: str
    customer_id: str
    resource_key: str
    resource_type: str
    text: str
    current_value: Decimal | None
    limit_value: Decimal | None
    percentage: Decimal | None
    unit: str | None
    actor: str | None
    comment: str | None
    at: dt.datetime

    @property
    def label(self) -> str:
        return _LABEL.get(self.transition, self.transition)

    def usage(self) -> str:
        if self.current_value is None:
            return "n/a"
        unit = f" {self.unit}" if self.unit else ""
        if self.limit_value is None:
            return f"{self.current_value}{unit} (no limit)"
        pct = f"{self.percentage}%" if self.percentage is not None else "?"
        return f"{self.current_value}{unit} of {self.limit_value}{unit} ({pct})"

    def headline(self) -> str:
        pct = f" at {self.percentage}%" if self.percentage is not None else ""
        return f"{self.label} {self.severity}: {self.resource_type} {self.resource_key}{pct}"

    def who(self) -> str:
        if self.transition in ("ACKNOWLEDGED", "RESOLVED") and self.actor:
            note = f": {self.comment}" if self.comment else ""
            return f"{self.transition.lower()} by {self.actor}{note}"
        return ""


class Message(msgspec.Struct, frozen=True):
    customer_id: str
    channel: str
    items: tuple[Item, ...]
    dashboard_url: str

    @property
    def severity(self) -> str:
        order = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
        return max(
            (i.severity for i in self.items),
            key=lambda s: order.index(s) if s in order else 0,
            default="LOW",
        )

    @property
    def link(self) -> str:
        return f"{self.dashboard_url.rstrip('/')}/customers/{self.customer_id}"

    def subject(self) -> str:
        if len(self.items) == 1:
            return f"[resmon] {self.items[0].headline()}"
        return f"[resmon] {len(self.items)} alert updates for {self.customer_id} ({self.severity})"

    def text(self) -> str:
        lines = [f"resmon alerts for customer {self.customer_id}", ""]
        for i in self.items:
            lines.append(f"* {i.headline()}")
            lines.append(f"  usage: {i.usage()}")
            lines.append(f"  {i.text}")
            if who := i.who():
                lines.append(f"  {who}")
            lines.append(f"  at {i.at.isoformat(timespec='seconds')} (alert {i.alert_id})")
        lines += ["", f"Dashboard: {self.link}", ""]
        return "\n".join(lines)

    def html(self) -> str:
        e = html.escape
        rows = "".join(
            f'<tr><td style="color:{SEVERITY_COLOUR.get(i.severity, "#888")}">'
            f"<b>{e(i.label)} {e(i.severity)}</b></td><td>{e(i.resource_key)}</td>"
            f"<td>{e(i.usage())}</td><td>{e(i.text)}<br><small>{e(i.who())}</small></td></tr>"
            for i in self.items
        )
        return (
            f"<html><body><h2>resmon alerts for {e(self.customer_id)}</h2>"
            "<table><tr><th>alert</th><th>resource</th><th>usage (limit, %)</th>"
            f"<th>details</th></tr>{rows}</table>"
            f'<p><a href="{e(self.link)}">Open the dashboard</a></p></body></html>'
        )

    def sms(self) -> str:
        if len(self.items) == 1:
            i = self.items[0]
            return f"resmon {i.headline()}. {i.usage()}. {self.link}"[:480]
        heads = "; ".join(i.headline() for i in self.items[:3])
        more = f" (+{len(self.items) - 3} more)" if len(self.items) > 3 else ""
        return f"resmon {self.customer_id}: {heads}{more}. {self.link}"[:480]

    def slack(self) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = []
        for i in self.items:
            fields = [
                {"type": "mrkdwn", "text": f"*Severity*\n{i.severity}"},
                {"type": "mrkdwn", "text": f"*Usage*\n{i.usage()}"},
            ]
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*{i.headline()}*\n{i.text}"},
                    "fields": fields,
                }
            )
            if who := i.who():
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": who}]})
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Dashboard"},
                        "url": self.link,
                    }
                ],
            }
        )
        return {
            "text": self.subject(),
            "attachments": [
                {"color": SEVERITY_COLOUR.get(self.severity, "#888"), "blocks": blocks}
            ],
        }

    def payload(self) -> dict[str, Any]:
        """The generic webhook's JSON body."""
        return {
            "customerId": self.customer_id,
            "severity": self.severity,
            "dashboardUrl": self.link,
            "alerts": [
                {
                    "alertId": i.alert_id,
                    "episodeId": i.episode_id,
                    "transition": i.transition,
                    "severity": i.severity,
                    "alertType": i.alert_type,
                    "status": i.status,
                    "resourceKey": i.resource_key,
                    "resourceType": i.resource_type,
                    "message": i.text,
                    "currentValue": str(i.current_value) if i.current_value is not None else None,
                    "limit": str(i.limit_value) if i.limit_value is not None else None,
                    "percentage": str(i.percentage) if i.percentage is not None else None,
                    "unit": i.unit,
                    "actor": i.actor,
                    "comment": i.comment,
                    "at": i.at.isoformat(),
                }
                for i in self.items
            ],
        }
