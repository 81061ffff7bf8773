"""A test CA and a C2PA signing certificate made with ``cryptography``, as an ``oxen_c2pa`` connection.

c2pa checks the signer's certificate profile, not only the signature: the signing certificate
must not be a CA, must allow ``digitalSignature``, must name its issuer's key (authority key
identifier) and must carry an extended key usage c2pa accepts. A Reader left at c2pa's defaults accepts only
``emailProtection`` of the usages C2PA names (the provider signs with document-signing and
C2PA claim-signing certificates too), so the tests' certificate has it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class SignerPems:
    chain: str  # the signing certificate, then the CA
    key: str  # PKCS#8 PEM

    def connection_json(self, **extra: str) -> str:
        return json.dumps(
            {
                "conn_type": "oxen_c2pa",
                "password": self.key,
                "extra": {"certificate_chain": self.chain, **extra},
            }
        )


def _usage(*, signing: bool) -> x509.KeyUsage:
    usages = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    return x509.KeyUsage(
        **dict.fromkeys(usages, False),
        digital_signature=signing,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def make_signer(
    *, leaf_is_ca: bool = False, usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.EMAIL_PROTECTION
) -> SignerPems:
    """A CA and a signing certificate it issued (``leaf_is_ca``: one c2pa must refuse)."""
    now = dt.datetime.now(dt.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Oxen provider tests"),
            ]
        )

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, is_ca: bool) -> x509.CertificateBuilder:
        unsigned = x509.CertificateBuilder(
            issuer_name=name("Test CA"),
            subject_name=name(subject),
            public_key=key.public_key(),
            serial_number=x509.random_serial_number(),
            not_valid_before=now - dt.timedelta(days=1),
            not_valid_after=now + dt.timedelta(days=30),
        )
        return (
            unsigned.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(_usage(signing=not is_ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test CA", ca_key, is_ca=True).sign(ca_key, hashes.SHA256())
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        certificate("Test signer", key, is_ca=leaf_is_ca)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SignerPems(
        chain=(leaf.public_bytes(pem) + ca.public_bytes(pem)).decode(),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )
