"""Ketenmonitor: a live throughput monitor for the Dutch justice chain."""

__version__ = "0.1.0"
