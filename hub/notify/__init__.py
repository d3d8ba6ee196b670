"""Notifications: preferences, routing, channels (email, SMS, Slack, webhook), delivery.

Alert transitions reach the notifier through ``alert_transitions`` (written by
triggers in the alert's own transaction); :mod:`.router` turns them into rows
of the notification log, :mod:`.worker` delivers them with retries, grouping,
inhibition and rate limits, :mod:`.channels` hold the one-method channel
interface and its four implementations, :mod:`.ssrf` guards customer URLs.
"""

from ._exceptions import DeliveryError, NotifyError, PreferencesError, UnsafeURLError
from .channels import Channel, Target
from .message import Item, Message
from .preferences import ChannelPrefs, Preferences, QuietHours
from .settings import NotifyConfig
from .ssrf import check_url
from .worker import Notifier, NotifyMetrics, run_notifier

__all__ = [
    "Channel",
    "ChannelPrefs",
    "DeliveryError",
    "Item",
    "Message",
    "Notifier",
    "NotifyConfig",
    "NotifyError",
    "NotifyMetrics",
    "Preferences",
    "PreferencesError",
    "QuietHours",
    "Target",
    "UnsafeURLError",
    "check_url",
    "run_notifier",
]
