"""The hub's REST API (aiohttp)."""

from ._http import ApiContext
from .app import create_app
from .server import serve

__all__ = ["ApiContext", "create_app", "serve"]
