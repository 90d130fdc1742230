"""Sabaq's recorder: a subscriber that muxes forwarded packets to disk (in progress)."""
