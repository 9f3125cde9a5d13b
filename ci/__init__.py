"""Delivery pipeline steps for containerised applications deployed with Helm."""

__version__ = "0.1.0"
