"""The hub's REST API (aiohttp)."""

from .app import ApiContext, create_app
from .server import serve

__all__ = ["ApiContext", "create_app", "serve"]
