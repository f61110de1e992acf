"""Realtime services: the event bus that carries committed change events to every node's subscribers."""
