"""A real SMTP server on a free loopback port (aiosmtpd + the project's mailbox handler).

`smtp_server` is started for the test and stopped at teardown. `stop()` / `start()` take it down
and bring it back on the same port, for the "SMTP down" tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from noderr_local.mailbox import MailboxHandler, MailboxMessage, read_mailbox
from noderr_local.process import free_port, port_open, wait_for


class SmtpTestServer:
    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.handler = MailboxHandler(directory)
        self._controller = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        if self._controller is not None:
            return
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, "test SMTP server")

    def stop(self) -> None:
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None
        wait_for(lambda: not port_open("127.0.0.1", self.port), 10, "test SMTP server shutdown")

    def messages(self) -> list[MailboxMessage]:
        return read_mailbox(self.directory)


@pytest.fixture
def smtp_server(tmp_path):
    server = SmtpTestServer(tmp_path / "mailbox")
    server.start()
    yield server
    server.stop()
