"""Ed25519 signatures over canonical JSON, for model manifests and version beacons.

Canonical form: the document's JSON-mode dump with sorted keys, no whitespace, UTF-8. Signing and
verifying both go through `canonical_bytes`, so any field change (or a reordered dict) that alters
meaning breaks the signature.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel


class SignatureError(ValueError):
    """A document's signature does not verify under the trusted public key."""


def canonical_bytes(document: BaseModel | dict[str, Any]) -> bytes:
    data = document.model_dump(mode="json") if isinstance(document, BaseModel) else document
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_private_key(hex_key: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(hex_key))


def load_public_key(hex_key: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError as exc:
        raise SignatureError(f"not a 32-byte hex Ed25519 public key: {exc}") from exc


def public_key_hex(private_key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex()


def sign_document(document: BaseModel | dict[str, Any], private_key: Ed25519PrivateKey) -> str:
    return base64.b64encode(private_key.sign(canonical_bytes(document))).decode()


def verify_document(
    document: BaseModel | dict[str, Any], signature_b64: str, public_key: Ed25519PublicKey
) -> None:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), canonical_bytes(document))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("signature does not verify under the trusted Noderr model key") from exc
