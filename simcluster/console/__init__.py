"""The emulated guest behind each VM's serial console (pure asyncio, no HTTP/WebSocket here)."""

from .guest import GuestConfig, GuestTerminal
from .net import GuestInterface, GuestNetwork

__all__ = ["GuestConfig", "GuestInterface", "GuestNetwork", "GuestTerminal"]
