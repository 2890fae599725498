"""The local SMTP mailbox: an aiosmtpd server on loopback that keeps every message it receives.

It stands in for a real SMTP relay in the local stack: the platform's email relay sends to it over
real SMTP, and a person reads the result under ``<state_dir>/mailbox/`` (one ``.eml`` file per
message plus ``index.jsonl``), with ``noderr mailbox list``, or through `read_mailbox`.

Run: ``python -m noderr_local.mailbox --host 127.0.0.1 --port 8025 --dir .noderr/mailbox``
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from noderr_core.timeutil import utcnow

INDEX_FILE = "index.jsonl"
_LINK_RE = re.compile(r"https?://[^\s<>\"')]+")


class MailboxHandler:
    """aiosmtpd handler: writes each message atomically as an .eml file and appends to the index."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd API
        self.store(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"

    def store(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
        received = utcnow()
        name = f"{received.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.eml"
        target = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target)  # readers never see a half-written message
        msg = email.message_from_bytes(content, policy=email.policy.default)
        entry = {
            "file": name,
            "received_at": received.isoformat(),
            "mail_from": mail_from,
            "rcpt_tos": rcpt_tos,
            "subject": str(msg.get("Subject", "")),
            "message_id": str(msg.get("Message-ID", "")),
        }
        with self._lock, (self.directory / INDEX_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        return target


@dataclass
class MailboxMessage:
    path: Path
    received_at: datetime
    mail_from: str
    to: list[str]
    subject: str
    message_id: str
    text: str
    html: str
    links: list[str] = field(default_factory=list)


def mailbox_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "mailbox"


def _resolve_dir(path: Path) -> Path:
    # Accept either the state dir (contract) or the mailbox directory itself.
    path = Path(path)
    if (path / INDEX_FILE).exists() or any(path.glob("*.eml")):
        return path
    return mailbox_dir(path)


def parse_message(path: Path) -> MailboxMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    text = text_part.get_content() if text_part is not None else ""
    html = html_part.get_content() if html_part is not None else ""
    links = list(dict.fromkeys(_LINK_RE.findall(text) or _LINK_RE.findall(html)))
    stamp = path.name.split("-", 1)[0]
    try:
        received = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=utcnow().tzinfo)
    except ValueError:
        received = datetime.fromtimestamp(path.stat().st_mtime, tz=utcnow().tzinfo)
    return MailboxMessage(
        path=path,
        received_at=received,
        mail_from=str(msg.get("From", "")),
        to=[a.strip() for a in str(msg.get("To", "")).split(",") if a.strip()],
        subject=str(msg.get("Subject", "")),
        message_id=str(msg.get("Message-ID", "")),
        text=text,
        html=html,
        links=links,
    )


def read_mailbox(directory: Path) -> list[MailboxMessage]:
    """Every stored message, oldest first. `directory` is the state dir or the mailbox dir."""
    root = _resolve_dir(directory)
    if not root.exists():
        return []
    return [parse_message(p) for p in sorted(root.glob("*.eml"))]


def smtp_host_port(smtp_url: str) -> tuple[str, int]:
    parts = urlsplit(smtp_url)
    return parts.hostname or "127.0.0.1", parts.port or 25


def service_spec(settings):
    """The mailbox as a local-stack service, listening where NODERR_SMTP_URL points."""
    import sys

    from noderr_local.process import ServiceSpec, port_open

    host, port = smtp_host_port(settings.smtp_url)
    directory = mailbox_dir(settings.state_dir)
    return ServiceSpec(
        name="mailbox",
        argv=[sys.executable, "-m", "noderr_local.mailbox", "--host", host, "--port", str(port),
              "--dir", str(directory)],
        url=f"smtp://{host}:{port}  (messages in {directory}; `noderr mailbox list`)",
        ready=lambda: port_open(host, port),
        ready_timeout=30,
        stop_grace=5,
    )


def serve(host: str, port: int, directory: Path) -> None:
    """Run the mailbox until SIGTERM/SIGINT."""
    from aiosmtpd.controller import Controller

    controller = Controller(MailboxHandler(directory), hostname=host, port=port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    controller.start()
    print(f"mailbox: SMTP on {host}:{port}, storing messages in {directory}", flush=True)
    try:
        while not stop.is_set():
            time.sleep(0.5)
    finally:
        controller.stop()


def format_listing(messages: list[MailboxMessage]) -> str:
    if not messages:
        return "the mailbox is empty"
    lines = []
    for m in messages:
        lines.append(f"{m.received_at:%Y-%m-%d %H:%M:%S}  to {', '.join(m.to)}  {m.subject}")
        lines.extend(f"    {link}" for link in m.links)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local SMTP server that keeps a readable mailbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, required=True, help="where messages are stored")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.dir)


if __name__ == "__main__":
    main()
