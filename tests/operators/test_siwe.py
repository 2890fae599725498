"""The EIP-4361 parser against messages made by the reference implementation (npm `siwe`, signed
by ethers under Node), and the relying party's checks on each field."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from noderr_core.operators.siwe import (
    SiweError,
    SiweMessage,
    check_message,
    parse_message,
    recover_signer,
    verify_signature,
)

ROOT = Path(__file__).resolve().parents[2]
KEY = "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1"
ADDRESS = Account.from_key(KEY).address
NOW = datetime(2026, 11, 30, 19, 30, tzinfo=UTC)

REFERENCE_CASES = [
    {"domain": "operators.noderr.example", "statement": "Sign in to the Noderr operator pages.",
     "uri": "https://operators.noderr.example/operator", "version": "1", "chainId": 8453,
     "nonce": "a1b2c3d4e5f60718", "issuedAt": "2026-11-30T19:00:00.000Z",
     "expirationTime": "2026-11-30T20:00:00.000Z"},
    # No statement, a port, every optional field, resources.
    {"domain": "127.0.0.1:8000", "uri": "http://127.0.0.1:8000/operator", "version": "1",
     "chainId": 1337, "nonce": "ABCDEFGHabcdefgh12345678", "issuedAt": "2026-11-30T19:00:00Z",
     "expirationTime": "2026-11-30T21:00:00.123Z", "notBefore": "2026-11-30T19:05:00Z",
     "requestId": "req-42", "resources": ["https://noderr.example/terms", "ipfs://bafybeigdyrzt5"]},
    # A scheme in the header, an offset time zone, punctuation in the statement.
    {"scheme": "https", "domain": "noderr.example", "uri": "https://noderr.example/operator?x=1#top",
     "statement": "I accept the Noderr terms: https://noderr.example/tos (v2), okay!", "version": "1",
     "chainId": 1, "nonce": "zzzzzzzz", "issuedAt": "2026-11-30T21:00:00+02:00"},
]


def reference_messages(cases: list[dict]) -> list[dict]:
    if shutil.which("node") is None or not (ROOT / "node_modules" / "siwe").is_dir():
        pytest.fail("the reference implementation is missing: run `npm install` (package.json has siwe, ethers)")
    done = subprocess.run(["node", str(Path(__file__).with_name("siwe_reference.js"))], cwd=ROOT,
                          input=json.dumps({"key": KEY, "messages": cases}), capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def reference():
    return reference_messages(REFERENCE_CASES)


def test_messages_of_the_reference_implementation_parse_field_by_field(reference):
    for case, made in zip(REFERENCE_CASES, reference, strict=True):
        m = parse_message(made["text"])
        assert m.address == ADDRESS
        assert m.domain == case["domain"] and m.scheme == case.get("scheme")
        assert m.uri == case["uri"] and m.version == "1" and m.chain_id == case["chainId"]
        assert m.nonce == case["nonce"] and m.statement == case.get("statement")
        assert m.issued_at == case["issuedAt"]
        assert m.expiration_time == case.get("expirationTime")
        assert m.not_before == case.get("notBefore")
        assert m.request_id == case.get("requestId")
        assert list(m.resources) == case.get("resources", [])
        # Our own rendering of the parsed message is byte for byte the reference's.
        assert m.to_text() == made["text"]
        # ethers' signature recovers to the message's address.
        assert verify_signature(m, made["text"], made["signature"]) == ADDRESS


def test_a_message_we_build_is_one_the_reference_parses_back(tmp_path):
    ours = SiweMessage(domain="127.0.0.1:8000", address=ADDRESS, uri="http://127.0.0.1:8000/operator",
                       version="1", chain_id=1337, nonce="0123456789abcdef", scheme="http",
                       statement="Sign in.", issued_at="2026-11-30T19:00:00.000Z",
                       expiration_time="2026-11-30T19:10:00.000Z")
    script = ("const {SiweMessage}=require('siwe');let s='';process.stdin.on('data',c=>s+=c);"
              "process.stdin.on('end',()=>{const m=new SiweMessage(s);process.stdout.write("
              "JSON.stringify({nonce:m.nonce,chainId:m.chainId,domain:m.domain,text:m.prepareMessage()}))})")
    done = subprocess.run(["node", "-e", script], cwd=ROOT, input=ours.to_text(), capture_output=True,
                          text=True, timeout=60, check=True)
    parsed = json.loads(done.stdout)
    assert parsed == {"nonce": "0123456789abcdef", "chainId": 1337, "domain": "127.0.0.1:8000",
                      "text": ours.to_text()}


def _valid() -> SiweMessage:
    return SiweMessage(domain="noderr.example", address=ADDRESS, uri="https://noderr.example/operator",
                       version="1", chain_id=1337, nonce="0123456789abcdef", scheme="https",
                       statement="Sign in.", issued_at="2026-11-30T19:25:00.000Z",
                       expiration_time="2026-11-30T19:35:00.000Z")


@pytest.mark.parametrize("mutate, error", [
    (lambda t: t.replace(" wants you", " want you"), "line 1"),
    (lambda t: t.replace(ADDRESS, ADDRESS.lower()), "EIP-55"),
    (lambda t: t.replace(ADDRESS, "0x1234"), "line 2"),
    (lambda t: t.replace("Version: 1", "Version: 2"), "version"),
    (lambda t: t.replace("Chain ID: 1337", "Chain ID: x"), "chain id"),
    (lambda t: t.replace("Nonce: 0123456789abcdef", "Nonce: short"), "nonce"),
    (lambda t: t.replace("Nonce: 0123456789abcdef", "Nonce: has-dash1"), "nonce"),
    (lambda t: t.replace("2026-11-30T19:25:00.000Z", "yesterday"), "RFC 3339"),
    (lambda t: t.replace("2026-11-30T19:25:00.000Z", "2026-02-30T19:25:00Z"), "not a valid date"),
    (lambda t: t.replace("URI: https://noderr.example/operator", "URI: not a uri"), "URI"),
    (lambda t: t.replace("\nVersion: 1\nChain ID: 1337", "\nChain ID: 1337\nVersion: 1"), "Version"),
    (lambda t: t + "\nExtra: field", "unexpected"),
    (lambda t: t.replace("\n", "\r\n"), "CR"),
    (lambda t: t.replace("Sign in.", "Sign\tin."), "statement"),
    (lambda t: "", "empty"),
])
def test_malformed_messages_are_refused_naming_what_is_wrong(mutate, error):
    with pytest.raises(SiweError, match=error):
        parse_message(mutate(_valid().to_text()))


def test_the_relying_party_checks_domain_uri_chain_and_validity_window():
    site = {"domain": "noderr.example", "uri_prefix": "https://noderr.example/operator", "chain_id": 1337}
    check_message(_valid(), now=NOW, **site)  # the valid one passes
    cases = [
        ({"domain": "evil.example"}, "is for evil.example"),
        ({"uri": "https://evil.example/operator"}, "not on"),
        ({"chain_id": 1}, "chain id 1"),
        ({"expiration_time": "2026-11-30T19:29:59.000Z"}, "expired"),
        ({"not_before": "2026-11-30T19:31:00.000Z"}, "not valid yet"),
        ({"issued_at": "2026-11-30T19:40:00.000Z"}, "future"),
    ]
    for change, error in cases:
        fields = {**_valid().__dict__, **change}
        with pytest.raises(SiweError, match=error):
            check_message(SiweMessage(**fields), now=NOW, **site)


def test_a_forged_or_foreign_signature_is_refused():
    message = _valid()
    text = message.to_text()
    other = Account.create()
    foreign = other.sign_message(encode_defunct(text=text)).signature.hex()
    with pytest.raises(SiweError, match=f"made by {other.address}"):
        verify_signature(message, text, "0x" + foreign.removeprefix("0x"))
    good = Account.from_key(KEY).sign_message(encode_defunct(text=text)).signature.hex()
    # The right key, but the signature of another text: recovers someone else.
    with pytest.raises(SiweError, match="not by"):
        verify_signature(message, text.replace("Sign in.", "Sign in!"), "0x" + good.removeprefix("0x"))
    with pytest.raises(SiweError, match="65 bytes"):
        recover_signer(text, "0xdeadbeef")
    with pytest.raises(SiweError, match="not a valid"):
        recover_signer(text, "0x" + "00" * 65)
    assert verify_signature(message, text, "0x" + good.removeprefix("0x")) == ADDRESS
