"""Key templating and key safety: nothing can be written outside the prefix."""

from __future__ import annotations

import pytest

from airflow_provider_oxen.exceptions import OxenKeyError
from airflow_provider_oxen.transfers.keys import (
    BATCH_KEY_FIELDS,
    check_key,
    key_value,
    normalise_prefix,
    render_key,
)

PREFIX = "campaigns/2026"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "campaigns/2026/../secrets.txt",
        "campaigns/2026/a/../../x.png",
        "campaigns/2026/./x.png",
        "campaigns/2026/..",
        "/campaigns/2026/x.png",
        "//campaigns/2026/x.png",
        "campaigns/2026//x.png",
        "campaigns/2026/x/",
        "campaigns\\2026\\x.png",
        "campaigns/2026/..\\..\\x.png",
        "campaigns/2026/%2e%2e/x.png",
        "campaigns/2026/%2E%2E/x.png",
        "campaigns/2026/%252e%252e/x.png",
        "campaigns/2026/a%2f..%2fb.png",
        "campaigns/2026/a%5c..%5cb.png",
        "campaigns/2026/\uff0e\uff0e/x.png",  # fullwidth dots: NFKC makes them ".."
        "campaigns/2026/\u2025/x.png",  # two-dot leader: NFKC makes it ".."
        "campaigns/2026/x\u202e.png",  # right-to-left override
        "campaigns/2026/x\u200b.png",  # zero-width space
        "campaigns/2026/x\x00.png",
        "campaigns/2026/x\n.png",
        "s3://bucket/campaigns/2026/x.png",
        "campaigns/2026",  # the prefix itself is not a key inside it
        "campaigns/20261/x.png",  # shares the prefix's characters but not its folder
        "other/x.png",
        "campaigns/2026/" + "x" * 1100,
    ],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(OxenKeyError):
        check_key(key, PREFIX)


@pytest.mark.parametrize(
    "key",
    [
        "campaigns/2026/x.png",
        "campaigns/2026/a/b/c.jpg",
        "campaigns/2026/..x.png",  # dots inside a name are fine
        "campaigns/2026/x..png",
        "campaigns/2026/caf\u00e9.png",  # composed é is already NFKC
        "campaigns/2026/manifest-manual__2026-05-01T09:30:00+00:00.json",
        "campaigns/2026/100%.png",
    ],
)
def test_safe_keys_pass(key: str) -> None:
    assert check_key(key, PREFIX) == check_key(key, "") == key  # an empty prefix: the whole bucket


@pytest.mark.parametrize("key", ["/a/b.png", "../a.png"])
def test_with_an_empty_prefix_keys_stay_relative(key: str) -> None:
    with pytest.raises(OxenKeyError):
        check_key(key, "")


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("campaigns", "campaigns"), ("campaigns/", "campaigns"), ("a/b/c/", "a/b/c"), ("", ""), (None, "")]
    + [(p, None) for p in ["/campaigns", "campaigns//x", "../campaigns", "a/../b", "s3://bucket/c", "a\\b"]],
)
def test_prefix_normalisation_refuses_unsafe_prefixes(prefix: str | None, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(OxenKeyError):
            normalise_prefix(prefix)
    else:
        assert normalise_prefix(prefix) == expected


def _values(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "prefix": PREFIX,
        "generation_id": "7f0c2a4e-1b2c-4d5e-8f90-123456789abc",
        "ext": "png",
        "index": 3,
        "model": "black-forest-labs-flux-2-klein-4b",
        "seed": 42,
        "run_id": "manual__2026-05-01T09:30:00+00:00",
    }
    values.update(overrides)
    return values


def test_render_fills_every_field_and_values_cannot_add_segments_or_climb() -> None:
    key = render_key("{prefix}/{model}/{seed}/{index:04d}-{generation_id}.{ext}", _values(), prefix=PREFIX)
    assert (
        key == f"{PREFIX}/black-forest-labs-flux-2-klein-4b/42/0003-7f0c2a4e-1b2c-4d5e-8f90-123456789abc.png"
    )
    key = render_key(
        "{prefix}/{generation_id}.{ext}", _values(generation_id="../../etc/passwd"), prefix=PREFIX
    )
    assert key == f"{PREFIX}/..-..-etc-passwd.png"
    with pytest.raises(OxenKeyError):
        render_key("{prefix}/{generation_id}", _values(generation_id=".."), prefix=PREFIX)
    assert key_value("a b/c\\d\u00e9") == "a-b-c-d"
    # A missing value is a clear error.
    with pytest.raises(OxenKeyError, match=r"no value for \{seed\}"):
        render_key("{prefix}/{seed}.png", _values(seed=None), prefix=PREFIX)
    with pytest.raises(OxenKeyError, match="could not be filled"):
        render_key("{prefix}/{model:04d}.png", _values(), prefix=PREFIX)


def test_batch_keys_only_see_batch_fields() -> None:
    key = render_key(
        "{prefix}/manifest-{run_id}.json",
        {"prefix": PREFIX, "run_id": "manual__2026-05-01T09:30:00+00:00"},
        prefix=PREFIX,
        allowed=BATCH_KEY_FIELDS,
    )
    assert key == f"{PREFIX}/manifest-manual__2026-05-01T09-30-00-00-00.json"
    with pytest.raises(OxenKeyError):
        render_key("{prefix}/{generation_id}.json", _values(), prefix=PREFIX, allowed=BATCH_KEY_FIELDS)


@pytest.mark.parametrize(
    "template",
    [
        # Anything but a plain allowed name.
        "{prefix}/{generation_id.__class__}.png",
        "{prefix}/{generation_id.__class__.__init__.__globals__}.png",
        "{prefix}/{seed[0]}.png",
        "{prefix}/{0}.png",
        "{prefix}/{}.png",
        "{prefix}/{prompt}.png",
        "{prefix}/{generation_id!r}.png",
        "{prefix}/{generation_id:{ext}}.png",
        "{prefix}/{generation_id",
        "{prefix}/generation_id}.png",
        # Rendered, outside the prefix.
        "../{generation_id}.{ext}",
        "{prefix}/../{generation_id}.{ext}",
        "/{prefix}/{generation_id}.{ext}",
        "{prefix}//{generation_id}.{ext}",
        "{prefix}\\{generation_id}.{ext}",
        "elsewhere/{generation_id}.{ext}",
    ],
)
def test_templates_that_reach_past_plain_names_or_leave_the_prefix_are_refused(template: str) -> None:
    with pytest.raises(OxenKeyError):
        render_key(template, _values(), prefix=PREFIX)
