"""The local mailbox service as the dev stack runs it: a process, real SMTP, files a person reads."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from email.message import EmailMessage

from click.testing import CliRunner

from noderr_cli.main import main as cli
from noderr_local.process import LocalStack
from noderr_local.mailbox import read_mailbox, service_spec
from noderr_core.settings import Settings
from noderr_local.process import free_port


def test_mailbox_service_stores_messages_readably(tmp_path):
    port = free_port()
    settings = Settings(env="test", state_dir=tmp_path / "state", smtp_url=f"smtp://127.0.0.1:{port}")
    stack = LocalStack(settings, log_dir=tmp_path / "logs")
    try:
        stack.start(service_spec(settings))
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "noreply@noderr.local", "op@example.com", "Your link"
        msg.set_content("Open http://127.0.0.1:8000/portal/download/abc to download.")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(msg)
    finally:
        stack.stop()
    [stored] = read_mailbox(settings.state_dir)
    assert stored.subject == "Your link" and stored.to == ["op@example.com"]
    assert stored.links == ["http://127.0.0.1:8000/portal/download/abc"]
    assert stored.path.parent == settings.state_dir / "mailbox" and stored.path.suffix == ".eml"
    assert (settings.state_dir / "mailbox" / "index.jsonl").read_text().count("\n") == 1
    out = CliRunner().invoke(cli, ["mailbox", "list", "--dir", str(settings.state_dir / "mailbox")])
    assert out.exit_code == 0, out.output
    assert "Your link" in out.output and "/portal/download/abc" in out.output


def test_mailbox_module_has_a_helpful_cli():
    out = subprocess.run([sys.executable, "-m", "noderr_local.mailbox", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--dir" in out.stdout
