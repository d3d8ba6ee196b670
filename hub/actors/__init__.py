"""The actor runtime: one ResourceActor per resource key, run by a fixed pool of shard workers."""

from .actor import Change, Outcome, ResourceActor
from .registry import Registry

__all__ = ["Change", "Outcome", "Registry", "ResourceActor"]
