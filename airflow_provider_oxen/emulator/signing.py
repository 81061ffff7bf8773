"""Signed, expiring result-file URLs (the emulator's stand-in for pre-signed storage URLs)."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time


class UrlSigner:
    """Makes and checks ``/files/{generation_id}/{name}?expires=<unix>&sig=<hmac>`` URLs."""

    def __init__(self) -> None:
        # Random per run, so URLs from an earlier run never validate.
        self._secret = secrets.token_bytes(32)

    def _sig(self, generation_id: str, name: str, expires: int) -> str:
        message = f"{generation_id}/{name}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def sign(self, base_url: str, generation_id: str, name: str, ttl_seconds: float) -> str:
        # Rounded up so a TTL of N seconds never yields a URL that lives less than N seconds.
        expires = math.ceil(time.time() + ttl_seconds)
        sig = self._sig(generation_id, name, expires)
        return f"{base_url}/files/{generation_id}/{name}?expires={expires}&sig={sig}"

    def check(self, generation_id: str, name: str, expires: str | None, sig: str | None) -> bool:
        """True when the signature is genuine and the URL has not expired."""
        if not expires or not sig or not expires.isdigit():
            return False
        if not hmac.compare_digest(self._sig(generation_id, name, int(expires)), sig):
            return False
        return time.time() <= int(expires)
