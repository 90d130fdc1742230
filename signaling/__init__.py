"""Sabaq's control plane: identity, lessons, permissions, footprint, HTTP (in progress)."""
