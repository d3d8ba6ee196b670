"""The notifier's exceptions (part of the :class:`~hub.HubError` tree).

::

    HubError
    └── NotifyError               a notification setting or delivery problem
        ├── PreferencesError      preferences rejected (the message names the field)
        ├── UnsafeURLError        a webhook URL points somewhere it must not (SSRF guard)
        └── DeliveryError         a channel failed to deliver; ``retryable``/``retry_after``

Channel libraries (aiosmtplib, aiohttp) raise their own errors; each channel
translates them into :class:`DeliveryError` with the status code and whether a
retry may help, and never puts a secret (password, token, webhook URL) in the
message.
"""

from __future__ import annotations

from .._exceptions import HubError

__all__ = ["DeliveryError", "NotifyError", "PreferencesError", "UnsafeURLError"]


class NotifyError(HubError):
    """Base of the notifier's errors."""


class PreferencesError(NotifyError):
    """Notification preferences were rejected; ``where`` is the JSON path of the field."""

    def __init__(self, message: str, where: str = "$") -> None:
        self.where = where
        super().__init__(message)


class UnsafeURLError(NotifyError):
    """A webhook URL was refused by the SSRF guard; the message says why."""


class DeliveryError(NotifyError):
    """A channel could not deliver.

    ``retryable`` is False for errors a retry cannot fix (4xx other than
    408/429, a refused URL, a rejected recipient). ``retry_after`` is the
    server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        super().__init__(message)
