"""Typed errors raised by the SFU's public API."""

from __future__ import annotations

__all__ = ["NegotiationError", "NotAllowed", "SfuError", "UnknownEntity"]


class SfuError(Exception):
    """Base class of every error the SFU raises on purpose."""


class NegotiationError(SfuError):
    """An SDP offer or answer was malformed or asked for something the SFU cannot do."""


class NotAllowed(SfuError):
    """The caller asked for something the participant's permissions forbid."""


class UnknownEntity(SfuError):
    """A room, participant or track id that does not exist (or no longer does)."""
