"""Secrets: passwords (argon2id), API keys and tokens (random, only sha256 stored), sealing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_password_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

NODE_KEY_PREFIX = "nk"
CLIENT_KEY_PREFIX = "ck"


# Each argon2id hash allocates 64 MiB and a core for ~0.1-0.4 s: at most this many run at once per
# process, so a burst of sign-in attempts queues instead of exhausting memory. A caller that waits
# longer than PASSWORD_HASH_WAIT_SECONDS gets PasswordHashBusy (the API answers 503 + Retry-After).
MAX_CONCURRENT_PASSWORD_HASHES = 2
PASSWORD_HASH_WAIT_SECONDS = 10.0
_password_hash_slots = threading.BoundedSemaphore(MAX_CONCURRENT_PASSWORD_HASHES)


class PasswordHashBusy(RuntimeError):
    """Every password-hashing slot stayed busy for PASSWORD_HASH_WAIT_SECONDS."""


@contextmanager
def _hash_slot():
    if not _password_hash_slots.acquire(timeout=PASSWORD_HASH_WAIT_SECONDS):
        raise PasswordHashBusy("too many sign-ins are being checked right now: try again shortly")
    try:
        yield
    finally:
        _password_hash_slots.release()


def hash_password(password: str) -> str:
    with _hash_slot():
        return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    with _hash_slot():
        try:
            return _password_hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@lru_cache(maxsize=1)
def _dummy_password_hash() -> str:
    return _password_hasher.hash(secrets.token_urlsafe(16))


def verify_against_dummy(password: str) -> bool:
    """Spend the same argon2 work as a real check, for an unknown account (no timing oracle)."""
    verify_password(_dummy_password_hash(), password)
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
