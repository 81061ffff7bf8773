"""Sensors of the Oxen provider."""
