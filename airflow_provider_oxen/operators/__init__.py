"""Operators of the Oxen provider."""
