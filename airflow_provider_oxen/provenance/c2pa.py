"""C2PA Content Credentials: a signed manifest saying how a stored image or clip was made.

Built with the C2PA project's own bindings (``c2pa-python``, the ``c2pa`` extra), imported only
when signing is configured, so the provider works without them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from dataclasses import dataclass, field
from types import ModuleType

from airflow.sdk import BaseHook

from airflow_provider_oxen import __version__
from airflow_provider_oxen.exceptions import OxenSigningConfigError, OxenSigningError
from airflow_provider_oxen.provenance.facts import Provenance

# A PEM pasted into a one-line form field arrives with its line breaks turned into spaces.
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_SETTINGS = {
    # c2pa pictures the asset and each ingredient in the manifest; at its default long edge
    # (1024 px) that re-encodes a 1024x1024 image whole (up to +40% bytes, ~0.3 s), and
    # viewers show them small.
    "builder": {"thumbnail": {"long_edge": 256}},
    # c2pa checks the certificate's extended key usage when signing too; unconfigured it takes
    # emailProtection only, refusing the document-signing and C2PA claim-signing (62558.2.1)
    # certificates that CAs on the C2PA Trust List issue.
    "trust": {"trust_config": "1.3.6.1.5.5.7.3.4\n1.3.6.1.5.5.7.3.36\n1.3.6.1.4.1.62558.2.1\n"},
}
# 1x1 PNG: credentials are proven by signing it before anything real is stored.
_PROBE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


class C2paSigningHook(BaseHook):
    """Registers the ``oxen_c2pa`` connection type; :meth:`SigningCredentials.from_connection` reads it.

    Password: the private key (PEM). Extra: ``certificate_chain`` (PEM, the signing certificate
    first), ``algorithm`` (default ``es256``), ``tsa_url`` (optional RFC 3161 timestamp authority).
    """

    conn_name_attr = "c2pa_conn_id"
    default_conn_name = "oxen_c2pa_default"
    conn_type = "oxen_c2pa"
    hook_name = "Oxen C2PA signing"


def _c2pa() -> ModuleType:
    try:
        import c2pa
    except ImportError:
        raise OxenSigningConfigError(
            "C2PA signing is configured but c2pa-python is not installed: "
            "pip install 'airflow-provider-oxen[c2pa]'",
            field="c2pa",
        ) from None
    return c2pa


def _pem(text: str) -> bytes:
    blocks = _PEM.findall(text)
    return "".join(
        f"-----BEGIN {label}-----\n{''.join(body.split())}\n-----END {label}-----\n" for label, body in blocks
    ).encode()


@dataclass(frozen=True)
class SigningCredentials:
    """A C2PA signing certificate chain (signing certificate first), its private key and algorithm.

    Checked on creation by signing a 1-pixel image, so a bad connection fails a task before
    anything is stored; the key is never shown by ``repr`` or any error.
    """

    certificate_chain: str
    private_key: str = field(repr=False)
    algorithm: str = "es256"
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        c2pa = _c2pa()
        allowed = sorted(alg.name.lower() for alg in c2pa.C2paSigningAlg)
        algorithm = self.algorithm.strip().lower()
        if algorithm not in allowed:
            raise OxenSigningConfigError(
                f"algorithm {self.algorithm!r} is not one of {', '.join(allowed)}",
                field="algorithm",
                allowed=allowed,
            )
        if self.tsa_url is not None and not self.tsa_url.startswith(("https://", "http://")):
            raise OxenSigningConfigError(f"tsa_url {self.tsa_url!r} is not an http(s) URL", field="tsa_url")
        try:
            key = serialization.load_pem_private_key(_pem(self.private_key), password=None)
        except (ValueError, TypeError):
            # Not the parser's text: the key's own bytes must never reach a message.
            raise OxenSigningConfigError(
                "private_key (the connection's password) is not an unencrypted PEM private key",
                field="private_key",
            ) from None
        try:
            chain = x509.load_pem_x509_certificates(_pem(self.certificate_chain))
        except ValueError:
            raise OxenSigningConfigError(
                "certificate_chain holds no PEM certificate (the signing certificate first, then "
                "its intermediates)",
                field="certificate_chain",
            ) from None
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(
            self,
            "private_key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
        )
        object.__setattr__(
            self,
            "certificate_chain",
            b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain).decode(),
        )
        # c2pa judges what parsing cannot: key type vs algorithm, key vs certificate, the
        # certificate's profile (not a CA, digitalSignature, an accepted extended key usage);
        # then, apart, whether the timestamp authority answers.
        tsa_url = self.tsa_url
        object.__setattr__(self, "tsa_url", None)
        self._probe("certificate_chain", f"certificate_chain, private_key and algorithm {algorithm!r}")
        if tsa_url is not None:
            object.__setattr__(self, "tsa_url", tsa_url)
            self._probe("tsa_url", f"the timestamp authority {tsa_url!r}")

    def _probe(self, field: str, what: str) -> None:
        try:
            sign(_PROBE_PNG, "image/png", Provenance("probe", "probe", "probe"), self)
        except OxenSigningError as error:
            raise OxenSigningConfigError(
                f"{what} could not sign a test image: {error}", field=field
            ) from None

    @classmethod
    def from_connection(cls, conn_id: str) -> SigningCredentials:
        """The credentials of an ``oxen_c2pa`` connection, checked."""
        conn = C2paSigningHook.get_connection(conn_id)
        extra = conn.extra_dejson
        try:
            return cls(
                certificate_chain=extra.get("certificate_chain") or "",
                private_key=conn.password or "",
                algorithm=extra.get("algorithm") or "es256",
                tsa_url=extra.get("tsa_url") or None,
            )
        except OxenSigningConfigError as error:
            raise OxenSigningConfigError(
                f"C2PA signing connection {conn_id!r}: {error}", field=error.field, allowed=error.allowed
            ) from None


def sign(data: bytes, mime_type: str, facts: Provenance, credentials: SigningCredentials) -> bytes | None:
    """``data`` with a signed C2PA manifest embedded, or None if c2pa cannot carry one in ``mime_type``.

    Ingredients with bytes are embedded (with any manifest they carry), so a chain of edits reads
    back whole. Raises :class:`OxenSigningError` when c2pa refuses a supported file.
    """
    c2pa = _c2pa()
    if mime_type not in c2pa.Builder.get_supported_mime_types():
        return None
    action = {
        "action": "c2pa.edited" if facts.ingredients else "c2pa.created",
        "digitalSourceType": facts.digital_source_type,
        "softwareAgent": {"name": facts.software_agent},
        "parameters": {"model": facts.model, "generation_id": facts.generation_id},
    }
    manifest = {
        "claim_generator_info": [{"name": "airflow-provider-oxen", "version": __version__}],
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    info = c2pa.C2paSignerInfo(
        credentials.algorithm,
        credentials.certificate_chain.encode(),
        credentials.private_key.encode(),
        credentials.tsa_url,
    )
    signed = io.BytesIO()
    try:
        with (
            c2pa.Context(c2pa.Settings.from_dict(_SETTINGS)) as context,
            c2pa.Builder(manifest, context=context) as builder,
            c2pa.Signer.from_info(info) as signer,
        ):
            # Only sources whose bytes were read can be embedded (a URL input is named in the XMP).
            sources = [ingredient for ingredient in facts.ingredients if ingredient.data]
            if sources:
                # The spec wants an edit's first action to open its parent: the intent adds it.
                builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            for index, ingredient in enumerate(sources):
                builder.add_ingredient(
                    {
                        "title": ingredient.uri,
                        "relationship": "componentOf" if index else "parentOf",
                        "metadata": {"sha256": hashlib.sha256(ingredient.data).hexdigest()},
                    },
                    ingredient.mime_type,
                    io.BytesIO(ingredient.data),
                )
            builder.sign(signer, mime_type, io.BytesIO(data), signed)
    except c2pa.C2paError as error:
        raise OxenSigningError(f"c2pa could not sign this {mime_type} file: {error}") from None
    return signed.getvalue()
