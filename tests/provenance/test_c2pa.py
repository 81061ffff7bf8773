"""C2PA signing, read back with c2pa-python's own Reader: manifest, actions, ingredients, hash binding."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import c2pa
import pytest
from cryptography import x509
from PIL import Image

from airflow_provider_oxen.exceptions import OxenSigningConfigError
from airflow_provider_oxen.provenance.c2pa import SigningCredentials, sign
from airflow_provider_oxen.provenance.facts import COMPOSITE, GENERATED, Ingredient, Provenance
from tests.provenance.certs import SignerPems, make_signer
from tests.transfers.helpers import make_clip

AGENT = "airflow-provider-oxen 0.4.3"
UNTRUSTED = {"signingCredential.untrusted"}  # a test CA is on no trust list


@pytest.fixture(scope="module")
def signer() -> SignerPems:
    return make_signer()


@pytest.fixture
def credentials(signer: SignerPems, monkeypatch: pytest.MonkeyPatch) -> SigningCredentials:
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_C2PA_TEST", signer.connection_json(algorithm="es256"))
    return SigningCredentials.from_connection("oxen_c2pa_test")


def image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(buffer, fmt)  # new noise, new bytes
    return buffer.getvalue()


def read(data: bytes, mime_type: str) -> dict[str, Any]:
    with c2pa.Reader(mime_type, io.BytesIO(data)) as reader:
        return dict(json.loads(reader.json()))


def codes(store: dict[str, Any]) -> set[str]:
    return {status["code"] for status in store.get("validation_status", [])}


def actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    [assertion] = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    return list(assertion["data"]["actions"])


MEDIA = [
    ("image/png", lambda tmp: image("PNG")),
    ("image/jpeg", lambda tmp: image("JPEG")),
    ("image/webp", lambda tmp: image("WEBP")),
    ("video/mp4", lambda tmp: make_clip(tmp / "clip.mp4", seconds=1)),
]


@pytest.mark.parametrize(("mime_type", "make"), MEDIA, ids=[m for m, _ in MEDIA])
def test_a_generation_is_signed_as_created_by_the_model(
    mime_type: str, make: Any, credentials: SigningCredentials, tmp_path: Path
) -> None:
    signed = sign(make(tmp_path), mime_type, Provenance("gen-1", "flux-dev", AGENT), credentials)

    assert signed is not None
    store = read(signed, mime_type)
    manifest = store["manifests"][store["active_manifest"]]
    assert manifest["claim_generator_info"][0]["name"] == "airflow-provider-oxen"
    [action] = actions(manifest)
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == GENERATED
    assert action["softwareAgent"] == {"name": AGENT}
    assert action["parameters"] == {"model": "flux-dev", "generation_id": "gen-1"}
    assert "ingredients" not in manifest
    # The hash binding holds (a mismatch would be listed); only the test CA is untrusted.
    assert codes(store) == UNTRUSTED
    assert store["validation_state"] == "Valid"


def test_a_generation_from_inputs_is_an_edit_with_a_parent_and_components(
    credentials: SigningCredentials,
) -> None:
    """The chain photo <- edit <- clip, each ingredient's own manifest carried along, is read back
    from stored files in tests/transfers/test_provenance.py (test_signed_edit_then_clip_...)."""
    base = image("PNG")  # never signed: an ingredient without a manifest
    inputs = (
        Ingredient("s3://b/base.png", "image/png", base),
        Ingredient("s3://b/logo.jpg", "image/jpeg", image("JPEG")),
    )
    signed = sign(image("PNG"), "image/png", Provenance("g", "kling-i2v", AGENT, inputs), credentials)

    assert signed is not None
    store = read(signed, "image/png")
    assert codes(store) == UNTRUSTED
    manifest = store["manifests"][store["active_manifest"]]
    opened, edited = actions(manifest)
    assert opened["action"] == "c2pa.opened"
    assert edited["action"] == "c2pa.edited" and edited["digitalSourceType"] == COMPOSITE
    assert edited["parameters"] == {"model": "kling-i2v", "generation_id": "g"}
    ingredients = manifest["ingredients"]
    relations = [(i["title"], i["relationship"]) for i in ingredients]
    assert relations == [("s3://b/base.png", "parentOf"), ("s3://b/logo.jpg", "componentOf")]
    assert ingredients[0]["metadata"] == {"sha256": hashlib.sha256(base).hexdigest()}
    assert "active_manifest" not in ingredients[0]


@pytest.mark.parametrize(("mime_type", "fmt"), [("image/png", "PNG"), ("image/jpeg", "JPEG")])
def test_a_changed_byte_breaks_the_hash_binding(
    mime_type: str, fmt: str, credentials: SigningCredentials
) -> None:
    signed = sign(image(fmt), mime_type, Provenance("g", "m", AGENT), credentials)
    assert signed is not None
    tampered = bytearray(signed)
    tampered[-20] ^= 0xFF  # inside the image data, after the manifest

    store = read(bytes(tampered), mime_type)

    assert store["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in codes(store)


def test_a_type_c2pa_cannot_carry_is_left_to_the_caller(credentials: SigningCredentials) -> None:
    assert sign(b"\x1a\x45\xdf\xa3webm", "video/webm", Provenance("g", "m", AGENT), credentials) is None


@pytest.mark.parametrize(
    "usage", ["1.3.6.1.5.5.7.3.36", "1.3.6.1.4.1.62558.2.1"], ids=["documentSigning", "c2pa-kp-claimSigning"]
)
def test_certificates_of_c2pa_trust_list_cas_sign(usage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pems = make_signer(usage=x509.ObjectIdentifier(usage))
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_C2PA_TEST", pems.connection_json())

    signed = sign(
        image("PNG"),
        "image/png",
        Provenance("g", "m", AGENT),
        SigningCredentials.from_connection("oxen_c2pa_test"),
    )

    assert signed is not None and read(signed, "image/png")["active_manifest"]


def test_a_pem_flattened_by_a_one_line_form_field_still_works(
    signer: SignerPems, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat = json.dumps(
        {
            "conn_type": "oxen_c2pa",
            "password": signer.key.replace("\n", " "),
            "extra": {"certificate_chain": signer.chain.replace("\n", " ")},
        }
    )
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_C2PA_TEST", flat)

    credentials = SigningCredentials.from_connection("oxen_c2pa_test")

    assert credentials.algorithm == "es256"
    assert sign(image("PNG"), "image/png", Provenance("g", "m", AGENT), credentials) is not None


def _key_body(key: str) -> str:
    return "".join(key.splitlines()[1:-1])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"password": ""}, "private_key", id="no key"),
        pytest.param(
            {"password": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "private_key",
            id="bad key",
        ),
        pytest.param({"certificate_chain": ""}, "certificate_chain", id="no chain"),
        pytest.param({"algorithm": "rs256"}, "algorithm", id="unknown algorithm"),
        pytest.param({"algorithm": "ps256"}, "certificate_chain", id="RSA algorithm, EC key"),
        pytest.param({"tsa_url": "timestamp.example"}, "tsa_url", id="TSA not a URL"),
        pytest.param({"tsa_url": "http://127.0.0.1:9/"}, "tsa_url", id="TSA not answering"),
        pytest.param({"other_key": True}, "certificate_chain", id="key of another certificate"),
        pytest.param({"ca_leaf": True}, "certificate_chain", id="CA as the signer"),
    ],
)
def test_bad_credentials_name_the_field_and_never_the_key(
    change: dict[str, Any],
    field: str,
    signer: SignerPems,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    change, connection = dict(change), json.loads(signer.connection_json())
    if change.pop("other_key", False):
        connection["password"] = make_signer().key
    if change.pop("ca_leaf", False):
        connection["extra"]["certificate_chain"] = make_signer(leaf_is_ca=True).chain
    if "password" in change:
        connection["password"] = change.pop("password")
    connection["extra"].update(change)
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_C2PA_TEST", json.dumps(connection))

    with pytest.raises(OxenSigningConfigError) as caught:
        SigningCredentials.from_connection("oxen_c2pa_test")

    assert caught.value.field == field
    assert "oxen_c2pa_test" in str(caught.value)
    for key in (signer.key, connection["password"]):
        if key:
            assert _key_body(key)[:40] not in str(caught.value)
            assert _key_body(key)[:40] not in caplog.text


def test_the_key_is_not_in_the_repr(credentials: SigningCredentials, signer: SignerPems) -> None:
    assert _key_body(signer.key)[:40] not in repr(credentials)
    assert "private_key" not in repr(credentials)


def test_without_c2pa_python_the_error_names_the_extra(
    signer: SignerPems, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OXEN_C2PA_TEST", signer.connection_json())
    monkeypatch.setitem(sys.modules, "c2pa", None)  # import c2pa now raises ImportError

    with pytest.raises(OxenSigningConfigError, match=r"airflow-provider-oxen\[c2pa\]") as caught:
        SigningCredentials.from_connection("oxen_c2pa_test")

    assert caught.value.field == "c2pa"


def test_thumbnails_are_small(credentials: SigningCredentials) -> None:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((640, 480)).save(buffer, "PNG")
    signed = sign(buffer.getvalue(), "image/png", Provenance("g", "m", AGENT), credentials)

    assert signed is not None
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        manifest = json.loads(reader.json())["manifests"][reader.get_active_manifest()["label"]]
        thumbnail = io.BytesIO()
        reader.resource_to_stream(manifest["thumbnail"]["identifier"], thumbnail)
    assert Image.open(thumbnail).size == (256, 192)
