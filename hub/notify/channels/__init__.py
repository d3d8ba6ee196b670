"""Delivery channels, each behind :class:`Channel` (one ``send`` method)."""

from .base import Channel, Target
from .email import EmailChannel
from .slack import SlackChannel
from .sms import TwilioChannel
from .webhook import WebhookChannel, sign

__all__ = [
    "Channel",
    "EmailChannel",
    "SlackChannel",
    "Target",
    "TwilioChannel",
    "WebhookChannel",
    "sign",
]
