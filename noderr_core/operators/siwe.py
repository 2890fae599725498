"""Sign-In with Ethereum (EIP-4361): build, parse and check one message, recover its signer.

The parser follows the EIP's ABNF line by line (no "find the Nonce somewhere" regexes): the message
is split on LF, each line must be exactly the next production, and each value is checked against
its own rule (RFC 3986 authority and URI, EIP-55 address, RFC 3339 date-time, nonce of 8+
alphanumerics). Anything else is a `SiweError` whose message says which line is wrong. The `siwe`
PyPI package is not used: it pins web3<8.

`check_message` applies the relying party's rules (domain, URI, chain id, validity window) and
`recover_signer` recovers the EIP-191 (`personal_sign`) signer with eth-account. The nonce's
single use is the caller's job (noderr_core.operators.sessions), because it needs the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address, to_checksum_address

HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"
# Clocks of wallets and servers drift; an Issued At this far in the future is still accepted.
CLOCK_SKEW = timedelta(minutes=2)
MAX_MESSAGE_LENGTH = 8_000

# RFC 3986 building blocks.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_IP_LITERAL = r"\[[0-9A-Fa-f:.vV]+\]"
_REG_NAME = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
_AUTHORITY = rf"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]*)?"
_PATH = rf"(?:/{_PCHAR}*)*"
_QUERY_FRAGMENT = rf"(?:[/?]|{_PCHAR})*"
_HIER_PART = rf"(?://{_AUTHORITY}{_PATH}|/?(?:{_PCHAR}+{_PATH})?)"
_URI = rf"{_SCHEME}:{_HIER_PART}(?:\?{_QUERY_FRAGMENT})?(?:#{_QUERY_FRAGMENT})?"

_RE_HEADER = re.compile(rf"^(?:(?P<scheme>{_SCHEME})://)?(?P<domain>{_AUTHORITY}){re.escape(HEADER_SUFFIX)}$")
_RE_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
# statement = *( reserved / unreserved / " " ): printable ASCII without LF.
_RE_STATEMENT = re.compile(rf"^[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*$")
_RE_URI = re.compile(rf"^{_URI}$")
_RE_CHAIN_ID = re.compile(r"^[0-9]{1,20}$")
_RE_NONCE = re.compile(r"^[A-Za-z0-9]{8,64}$")
_RE_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_RE_REQUEST_ID = re.compile(rf"^{_PCHAR}*$")


class SiweError(ValueError):
    """The message is not acceptable here (signature, site, validity); the text says what to fix."""


class SiweSyntaxError(SiweError):
    """The text is not an EIP-4361 message; the text names the first line that breaks the grammar."""


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: str
    scheme: str | None = None
    statement: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = field(default_factory=tuple)

    def to_text(self) -> str:
        """The EIP-4361 text a wallet shows and signs (same layout as the reference library)."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme else self.domain
        lines = [origin + HEADER_SUFFIX, self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines.append("")
        lines += [f"URI: {self.uri}", f"Version: {self.version}", f"Chain ID: {self.chain_id}",
                  f"Nonce: {self.nonce}", f"Issued At: {self.issued_at}"]
        if self.expiration_time:
            lines.append(f"Expiration Time: {self.expiration_time}")
        if self.not_before:
            lines.append(f"Not Before: {self.not_before}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)


def parse_datetime(value: str, what: str) -> datetime:
    """An RFC 3339 date-time (as the ABNF's `date-time`) → aware UTC datetime."""
    m = _RE_DATETIME.match(value)
    if not m:
        raise SiweSyntaxError(f"{what} {value!r} is not an RFC 3339 date-time (e.g. 2026-01-31T12:00:00Z)")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise SiweSyntaxError(f"{what} {value!r} is not a valid date") from None
    return parsed.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _field(lines: list[str], i: int, tag: str, rule: re.Pattern | None, what: str) -> str:
    if i >= len(lines) or not lines[i].startswith(tag):
        found = lines[i] if i < len(lines) else "the end of the message"
        raise SiweSyntaxError(f"line {i + 1}: expected '{tag}…', found {found[:80]!r}")
    value = lines[i][len(tag):]
    if rule is not None and not rule.match(value):
        raise SiweSyntaxError(f"line {i + 1}: {what} {value[:80]!r} is not valid")
    return value


def parse_message(text: str) -> SiweMessage:
    """Parse an EIP-4361 message; raises SiweError naming the first line that breaks the grammar."""
    if not isinstance(text, str) or not text:
        raise SiweSyntaxError("the sign-in message is empty")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise SiweSyntaxError(f"the sign-in message is too long ({len(text)} characters)")
    if "\r" in text:
        raise SiweSyntaxError("the sign-in message must use LF line ends, not CR")
    lines = text.split("\n")
    header = _RE_HEADER.match(lines[0])
    if not header:
        raise SiweSyntaxError("line 1: expected '<domain> wants you to sign in with your Ethereum account:'")
    if len(lines) < 3:
        raise SiweSyntaxError("the message ends after its first line")
    address = lines[1]
    if not _RE_ADDRESS.match(address):
        raise SiweSyntaxError(f"line 2: {address[:80]!r} is not an Ethereum address (0x + 40 hex digits)")
    if not is_checksum_address(address):
        raise SiweSyntaxError(f"line 2: address {address} is not EIP-55 checksummed (EIP-4361 requires it)")
    if lines[2] != "":
        raise SiweSyntaxError("line 3: expected an empty line after the address")
    # Either "" (no statement) then "URI: ...", or statement, "" then "URI: ...".
    i = 3
    statement = None
    if i < len(lines) and lines[i] == "":
        i += 1
    else:
        statement = lines[i] if i < len(lines) else ""
        if not _RE_STATEMENT.match(statement):
            raise SiweSyntaxError("line 4: the statement has characters EIP-4361 does not allow")
        if i + 1 >= len(lines) or lines[i + 1] != "":
            raise SiweSyntaxError("line 5: expected an empty line after the statement")
        i += 2
    uri = _field(lines, i, "URI: ", _RE_URI, "URI")
    version = _field(lines, i + 1, "Version: ", None, "version")
    if version != "1":
        raise SiweSyntaxError(f"line {i + 2}: version {version!r} is not supported (only 1)")
    chain_id = int(_field(lines, i + 2, "Chain ID: ", _RE_CHAIN_ID, "chain id"))
    nonce = _field(lines, i + 3, "Nonce: ", _RE_NONCE, "nonce")
    issued_at = _field(lines, i + 4, "Issued At: ", None, "issued-at")
    parse_datetime(issued_at, "Issued At")
    i += 5
    optional = {}
    for tag, key, rule in (("Expiration Time: ", "expiration_time", None),
                           ("Not Before: ", "not_before", None),
                           ("Request ID: ", "request_id", _RE_REQUEST_ID)):
        if i < len(lines) and lines[i].startswith(tag):
            optional[key] = _field(lines, i, tag, rule, key.replace("_", " "))
            i += 1
    for key, label in (("expiration_time", "Expiration Time"), ("not_before", "Not Before")):
        if key in optional:
            parse_datetime(optional[key], label)
    resources: list[str] = []
    if i < len(lines) and lines[i] == "Resources:":
        i += 1
        while i < len(lines) and lines[i].startswith("- "):
            resource = lines[i][2:]
            if not _RE_URI.match(resource):
                raise SiweSyntaxError(f"line {i + 1}: resource {resource[:80]!r} is not a URI")
            resources.append(resource)
            i += 1
    if i != len(lines):
        raise SiweSyntaxError(f"line {i + 1}: unexpected {lines[i][:80]!r} (fields are out of order or unknown)")
    return SiweMessage(
        scheme=header.group("scheme"), domain=header.group("domain"), address=address,
        statement=statement, uri=uri, version=version, chain_id=chain_id, nonce=nonce,
        issued_at=issued_at, resources=tuple(resources), **optional,
    )


def check_message(message: SiweMessage, *, domain: str, uri_prefix: str, chain_id: int,
                  now: datetime) -> None:
    """The relying party's checks; raises SiweError with what is wrong and what to do."""
    if message.domain.lower() != domain.lower():
        raise SiweError(f"this message is for {message.domain}, not {domain}: sign in on {domain} itself")
    if message.uri != uri_prefix and not message.uri.startswith(uri_prefix.rstrip("/") + "/"):
        raise SiweError(f"the message's URI {message.uri} is not on {uri_prefix}")
    if message.chain_id != chain_id:
        raise SiweError(
            f"the message is for chain id {message.chain_id}, this network uses chain id {chain_id}: "
            "switch your wallet to the right network and sign in again"
        )
    issued = parse_datetime(message.issued_at, "Issued At")
    if issued > now + CLOCK_SKEW:
        raise SiweError("the message was issued in the future: check your computer's clock")
    if message.expiration_time and parse_datetime(message.expiration_time, "Expiration Time") <= now:
        raise SiweError("the sign-in message has expired: start the sign-in again")
    if message.not_before and parse_datetime(message.not_before, "Not Before") > now:
        raise SiweError("the sign-in message is not valid yet (Not Before is in the future)")


def recover_signer(text: str, signature: str) -> str:
    """The checksummed address that signed `text` with EIP-191 personal_sign."""
    if not isinstance(signature, str) or not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
        raise SiweError("the signature is not 65 bytes of hex (0x + 130 hex digits)")
    try:
        recovered = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception:  # eth-keys raises several types for an invalid point or v
        raise SiweError("the signature is not a valid Ethereum signature") from None
    return to_checksum_address(recovered)


def verify_signature(message: SiweMessage, text: str, signature: str) -> str:
    """Recover the signer and require that it is the message's address."""
    signer = recover_signer(text, signature)
    if signer != message.address:
        raise SiweError(
            f"the signature was made by {signer}, not by {message.address} named in the message"
        )
    return signer
