"""Provenance written into stored files: IPTC/XMP marking and, when configured, C2PA signing."""
