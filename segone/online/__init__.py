"""The online side of segone: the durable store the server writes to, and the Engine that
turns each incoming event into live profile updates, transitions, triggers and decisions."""

from segone.online.store import OnlineStore, OnlineStoreError, Tx

__all__ = ["OnlineStore", "OnlineStoreError", "Tx"]
