"""Triggers of the Oxen provider."""
