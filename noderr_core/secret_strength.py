"""Minimum strength of every secret the control plane is configured with outside local development.

A production deployment must never run on a guessable secret: `NODERR_SECRET_KEY` seals node keys
and signs cookies, the bootstrap admin password guards the dashboard, the metrics token guards
`/metrics`. `weak_secret_reasons(settings)` lists each weak one by its environment variable with
what is wrong, so the start-up error says exactly which variable to fix.

The check is length plus a crude entropy floor (distinct characters and estimated bits), which
rejects "", "x", "aaaaaaaa…" and "password1234"-style values without pretending to be a password
meter; keys with a fixed format (chain and signing keys) are checked for that format.
"""

from __future__ import annotations

import math
import re

# (setting name, minimum length, minimum estimated bits)
TOKEN_RULES: tuple[tuple[str, int, int], ...] = (
    ("secret_key", 32, 128),
    ("typeform_secret", 16, 64),
    ("metrics_token", 24, 96),
    ("s3_secret_access_key", 16, 64),
    ("bootstrap_admin_password", 12, 50),
)
_HEX_32 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_COMMON = ("password", "changeme", "change-me", "secret", "admin", "noderr", "123456", "qwerty")


def estimated_bits(value: str) -> float:
    """Length × log2(alphabet the characters come from), capped by the distinct characters used."""
    alphabet = 0
    if re.search(r"[a-z]", value):
        alphabet += 26
    if re.search(r"[A-Z]", value):
        alphabet += 26
    if re.search(r"[0-9]", value):
        alphabet += 10
    if re.search(r"[^a-zA-Z0-9]", value):
        alphabet += 33
    distinct = len(set(value))
    if not value or alphabet == 0:
        return 0.0
    per_char = math.log2(min(alphabet, max(distinct, 2) * 4))
    return len(value) * per_char


def token_weakness(value: str, min_length: int, min_bits: int) -> str | None:
    if not value:
        return "is empty"
    if len(value) < min_length:
        return f"is {len(value)} characters; at least {min_length} are required"
    if len(set(value)) < 8:
        return "uses fewer than 8 distinct characters"
    lowered = value.lower()
    if any(word in lowered and len(lowered) < len(word) + 12 for word in _COMMON):
        return "is built around a common word; use a random value"
    if estimated_bits(value) < min_bits:
        return f"is too predictable (about {estimated_bits(value):.0f} bits; {min_bits} required)"
    return None


def weak_secret_reasons(settings) -> list[str]:
    """'NODERR_X <what is wrong>' for every weak secret in `settings` (empty when all are strong)."""
    reasons = []
    for name, min_length, min_bits in TOKEN_RULES:
        if name == "s3_secret_access_key" and not settings.s3_access_key_id:
            continue  # no static keys: the instance role's credentials are used
        problem = token_weakness(getattr(settings, name).get_secret_value(), min_length, min_bits)
        if problem:
            reasons.append(f"NODERR_{name.upper()} {problem}")
    for name in ("chain_signer_key", "model_signing_key"):
        value = getattr(settings, name).get_secret_value()
        if not _HEX_32.match(value):
            reasons.append(f"NODERR_{name.upper()} must be 32 bytes of hex (64 hex digits)")
        elif len(set(value.lower().removeprefix("0x"))) < 8:
            reasons.append(f"NODERR_{name.upper()} is not a random key")
    return reasons
