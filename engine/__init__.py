"""Declic: an event-stream trigger engine for in-app messaging."""

__version__ = "0.1.0"
