"""Secrets: passwords (argon2id), API keys and tokens (random, only sha256 stored), sealing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_password_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

NODE_KEY_PREFIX = "nk"
CLIENT_KEY_PREFIX = "ck"


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sha256_hex(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class IssuedApiKey:
    """A freshly generated key. `plaintext` exists only here; persist `key_id` + `key_hash`."""

    key_id: str
    plaintext: str
    key_hash: str


def issue_api_key(prefix: str) -> IssuedApiKey:
    """`<prefix>_<key_id>_<secret>`: the key id is a public lookup handle, the secret is 256 bits.

    The secret has full entropy, so a plain sha256 is the right stored form (as GitHub and Stripe
    tokens); argon2 is for low-entropy human passwords.
    """
    key_id = secrets.token_hex(8)
    plaintext = f"{prefix}_{key_id}_{secrets.token_urlsafe(32)}"
    return IssuedApiKey(key_id=key_id, plaintext=plaintext, key_hash=sha256_hex(plaintext))


def parse_api_key(plaintext: str, prefix: str) -> str | None:
    """Return the key id of a well-formed key with this prefix, else None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or len(parts[1]) != 16:
        return None
    return parts[1]


def api_key_matches(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(sha256_hex(plaintext), stored_hash)


def _sealing_key(secret_key: str) -> bytes:
    return hashlib.sha256(b"noderr-seal:" + secret_key.encode()).digest()


def seal(plaintext: str, secret_key: str) -> str:
    """Encrypt a short secret at rest (AES-GCM under a key derived from NODERR_SECRET_KEY)."""
    nonce = secrets.token_bytes(12)
    ct = AESGCM(_sealing_key(secret_key)).encrypt(nonce, plaintext.encode(), None)
    return base64.urlsafe_b64encode(nonce + ct).decode()


def unseal(sealed: str, secret_key: str) -> str:
    raw = base64.urlsafe_b64decode(sealed.encode())
    return AESGCM(_sealing_key(secret_key)).decrypt(raw[:12], raw[12:], None).decode()
