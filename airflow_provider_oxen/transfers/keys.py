"""S3 key templating and safety: every key the transfer writes stays inside its prefix.

After Jinja, placeholders are filled with :meth:`str.format_map`, which can reach attributes
(``{model.__class__}``) and items: anything but a plain allowed name is refused, values are
reduced to a safe character set, and :func:`check_key` has the last word.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

from airflow_provider_oxen.exceptions import OxenKeyError, OxenValidationError

# S3's own limit on a key's length, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
IMAGE_KEY_FIELDS = frozenset({"prefix", "generation_id", "ext", "index", "model", "seed", "run_id"})
BATCH_KEY_FIELDS = frozenset({"prefix", "run_id"})
_UNSAFE_VALUE_CHARS = re.compile(r"[^A-Za-z0-9._=-]+")


def key_value(value: object) -> str:
    """A placeholder value reduced to ``[A-Za-z0-9._=-]``: a ``/`` in an id must not add segments."""
    text = _UNSAFE_VALUE_CHARS.sub("-", str(value)).strip("-")
    return text or "-"


def _decoded_forms(segment: str) -> Iterable[str]:
    """The segment and what URL-decoding it (repeatedly: ``%252e`` → ``%2e`` → ``.``) would make of it."""
    seen = segment
    yield seen
    for _ in range(3):
        decoded = unquote(seen)
        if decoded == seen:
            return
        seen = decoded
        yield seen


def _problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"is longer than S3's {MAX_KEY_BYTES}-byte limit"
    if "\\" in key:
        return "contains a backslash"
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in key):
        return "contains control or invisible formatting characters"
    if unicodedata.normalize("NFKC", key) != key:
        # e.g. fullwidth dots (U+FF0E) become ".." for any tool that normalises names.
        return "is not in Unicode normal form NFKC (a tool normalising it would read another path)"
    if key.startswith("/"):
        return "is absolute (starts with '/')"
    if "://" in key:
        return "looks like a URI; give a key relative to the bucket"
    for segment in key.split("/"):
        if segment == "":
            return "has an empty path segment ('//' or a trailing '/')"
        for form in _decoded_forms(segment):
            if form in (".", ".."):
                return f"has a '{form}' path segment" + ("" if form == segment else f" (as {segment!r})")
            if form != segment and ("/" in form or "\\" in form):
                return f"has an encoded path separator in {segment!r}"
    return None


def check_bucket(bucket: object) -> str:
    """``bucket`` if it is a bucket name (no ``s3://``, no path); raises OxenValidationError."""
    name = str(bucket or "").strip()
    if not name or "/" in name:
        raise OxenValidationError(f"bucket must be a bucket name (no s3://, no path), got {name!r}")
    return name


def normalise_prefix(prefix: str | None) -> str:
    """The prefix without a trailing ``/``; ``""`` means the whole bucket. Raises OxenKeyError."""
    text = "" if prefix is None else str(prefix)
    if text.startswith("s3://"):
        raise OxenKeyError(f"prefix {text!r} is a URI: put the bucket in `bucket` and the path in `prefix`")
    text = text[:-1] if text.endswith("/") else text
    if text:
        problem = _problem(text)
        if problem is not None:
            raise OxenKeyError(f"prefix {text!r} {problem}", field="prefix")
    return text


def check_key(
    key: str, prefix: str, *, what: str = "key", refusing: str = "refusing to upload anything"
) -> str:
    """Return ``key`` if it is a safe key strictly inside the (normalised) ``prefix``; else OxenKeyError."""
    problem = _problem(key)
    if problem is not None:
        raise OxenKeyError(f"{what} {key!r} {problem}; {refusing}", field=what)
    if prefix and not key.startswith(prefix + "/"):
        raise OxenKeyError(f"{what} {key!r} is outside the prefix {prefix + '/'!r}; {refusing}", field=what)
    return key


def template_fields(template: str, allowed: frozenset[str], *, what: str = "key_template") -> set[str]:
    """The placeholders ``template`` uses; raises OxenKeyError on anything but plain allowed names."""
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise OxenKeyError(f"{what} {template!r} is not a valid template: {exc}", field=what) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise OxenKeyError(f"{what} {template!r} uses a positional placeholder", field=what)
        if name not in allowed:
            detail = "attribute/item access is not allowed" if re.search(r"[.\[]", name) else "unknown name"
            raise OxenKeyError(
                f"{what} {template!r}: placeholder {{{name}}}: {detail}; allowed: {sorted(allowed)}",
                field=what,
            )
        if conversion is not None or (spec and "{" in spec):
            raise OxenKeyError(
                f"{what} {template!r}: conversions and nested placeholders are not allowed", field=what
            )
        used.add(name)
    return used


def render_key(
    template: str,
    values: Mapping[str, object],
    *,
    prefix: str,
    allowed: frozenset[str] = IMAGE_KEY_FIELDS,
    what: str = "key",
) -> str:
    """Fill ``template``'s placeholders and check the result stays inside ``prefix``.

    Integers stay integers so format specs like ``{index:04d}`` work; other values go through
    :func:`key_value`.
    """
    used = template_fields(template, allowed, what=f"{what} template")
    safe: dict[str, object] = {}
    for name, value in values.items():
        if name == "prefix":
            safe[name] = prefix
        elif isinstance(value, int) and not isinstance(value, bool):
            safe[name] = value
        elif value is not None:
            safe[name] = key_value(value)
    missing = sorted(used - safe.keys())
    if missing:
        raise OxenKeyError(
            f"{what} template {template!r}: no value for {{{missing[0]}}}", field=f"{what} template"
        )
    try:
        key = template.format_map(safe)
    except (ValueError, TypeError) as exc:
        raise OxenKeyError(f"{what} template {template!r} could not be filled: {exc}", field=what) from None
    return check_key(key, prefix, what=what)
