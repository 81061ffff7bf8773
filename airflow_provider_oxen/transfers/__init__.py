"""Transfers of the Oxen provider."""
