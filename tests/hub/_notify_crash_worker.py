"""A notifier process that dies by SIGKILL right after a send, before recording it.

Usage: python _notify_crash_worker.py DSN  (the webhook URL comes from the preferences)
"""

from __future__ import annotations

import os
import signal
import sys

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]

from hub.notify import Message, NotifyConfig, Target, run_notifier
from hub.notify.channels import WebhookChannel
from hub.notify.ssrf import parse_networks


class SendThenDie:
    name = "webhook"

    def __init__(self, inner: WebhookChannel) -> None:
        self.inner = inner

    async def send(self, message: Message, target: Target) -> None:
        await self.inner.send(message, target)
        os.kill(os.getpid(), signal.SIGKILL)  # delivered, never recorded


async def main(dsn: str) -> None:
    config = NotifyConfig(
        allow_networks=parse_networks("127.0.0.0/8"),
        group_seconds=0,
        poll_seconds=0.02,
        lease_seconds=1.0,
        worker_id="doomed-worker",
    )
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    async with aiohttp.ClientSession() as session:
        channels = {"webhook": SendThenDie(WebhookChannel(config, session))}
        await run_notifier(pool, config, None, channels=channels)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
