"""Alerts: what a threshold transition becomes in PostgreSQL and on ``resource.alerts``."""

from .records import AlertRecord, alert_record, to_event

__all__ = ["AlertRecord", "alert_record", "to_event"]
