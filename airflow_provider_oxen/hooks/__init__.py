"""Hooks of the Oxen provider."""
