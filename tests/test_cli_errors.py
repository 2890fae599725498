"""Ordinary mistakes on the command line: one line naming what to fix, a non-zero exit, no traceback.

Each case runs the real `noderr` command (click's CliRunner) against real settings: a missing model
file, an unsupported URL, a bad S3 bucket, bad database URLs, an unreachable RPC, a bad --key or
--wallet, a SQLite file under a missing directory, a second `noderr dev up`.
"""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from noderr_cli.main import main
from noderr_core.settings import Settings, get_settings
from noderr_local.process import free_port
from noderr_local.stack import exclusive_stack


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run `noderr ARGS` with a fresh state dir and nothing listening where services would be."""
    dead = free_port()
    env = {
        "NODERR_ENV": "local",
        "NODERR_STATE_DIR": str(tmp_path / "state"),
        "NODERR_DATABASE_URL": "",
        "NODERR_S3_ENDPOINT_URL": f"http://127.0.0.1:{dead}",
        "NODERR_CHAIN_RPC_URL": f"http://127.0.0.1:{dead}",
    }

    def run(*args: str, **overrides: str):
        get_settings.cache_clear()
        for name, value in {**env, **overrides}.items():
            monkeypatch.setenv(name, value)
        try:
            return CliRunner().invoke(main, list(args))
        finally:
            get_settings.cache_clear()

    return run


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    # ClickException: no traceback escaped (CliRunner keeps an unhandled one in .exception).
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_model_file(cli, tmp_path):
    missing = tmp_path / "nope" / "model.onnx"
    assert_one_line_error(cli("models", "publish-file", str(missing), "--name", "m"),
                          str(missing), "does not exist")


def test_unsupported_url_scheme(cli):
    assert_one_line_error(cli("models", "publish-file", "ftp://example.org/m.onnx", "--name", "m"),
                          "ftp://", "s3://bucket/key")


def test_bad_s3_bucket(cli):
    assert_one_line_error(cli("models", "publish-file", "s3://Not_A_Bucket!/m.onnx", "--name", "m"),
                          "'Not_A_Bucket!' is not a valid S3 bucket name")


@pytest.mark.parametrize(("url", "fragment"), [
    ("nonsense://x", "is not a supported database"),
    ("not a url", "is not a database URL"),
    ("postgresql+nosuchdriver://u:secret@127.0.0.1/db", "not a supported database"),
    ("postgresql+psycopg://u:secret@127.0.0.1/db", "is not installed"),
])
def test_bad_database_url(cli, url, fragment):
    line = assert_one_line_error(cli("models", "list", NODERR_DATABASE_URL=url), fragment,
                                 "sqlite:///")
    assert "secret" not in line  # the password is never printed


def test_unreachable_database_server(cli):
    port = free_port()
    url = f"postgresql+psycopg2://noderr:secret@127.0.0.1:{port}/noderr"
    line = assert_one_line_error(cli("models", "list", NODERR_DATABASE_URL=url),
                                 "cannot be used", "NODERR_DATABASE_URL")
    assert "secret" not in line


def test_database_not_migrated(cli):
    assert_one_line_error(cli("chain", "relay"), "noderr db upgrade")


def test_sqlite_under_a_missing_directory_is_an_error_not_created(cli, tmp_path):
    target = tmp_path / "typo" / "noderr.db"
    assert_one_line_error(cli("db", "upgrade", NODERR_DATABASE_URL=f"sqlite:///{target}"),
                          str(target.parent), "does not exist")
    assert not target.parent.exists()


def test_default_database_prepares_its_own_state_dir(cli, tmp_path):
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "state" / "noderr.db").is_file()


def test_unreachable_rpc(cli):
    assert_one_line_error(cli("chain", "deploy"), "is not reachable", "noderr dev up")


def test_contracts_not_deployed(cli):
    assert_one_line_error(cli("chain", "status"), "noderr chain deploy")


def test_bad_key(cli):
    line = assert_one_line_error(cli("chain", "claim", "--key", "0xnot-a-key-123"),
                                 "--key is not a private key")
    assert "not-a-key" not in line  # never echo a (mistyped) secret


def test_bad_wallet(cli):
    cli("db", "upgrade")
    assert_one_line_error(cli("chain", "claim", "--wallet", "0x123"), "'0x123' is not an Ethereum address")


def test_second_dev_up_refuses_and_leaves_the_running_stack_alone(cli, tmp_path):
    settings = Settings(env="local", state_dir=tmp_path / "state")
    mailbox_log = tmp_path / "state" / "logs" / "mailbox.log"
    mailbox_log.parent.mkdir(parents=True)
    mailbox_log.write_text("250 OK: message kept\n")
    with exclusive_stack(settings):  # the running stack holds the state dir
        line = assert_one_line_error(cli("dev", "up"), "already running", str(settings.state_dir),
                                     "pid ")
    assert mailbox_log.read_text() == "250 OK: message kept\n"
    assert not (tmp_path / "state" / "noderr.db").exists()  # nothing was prepared either
    assert "Ctrl-C" in line


def test_dev_up_refuses_busy_ports(cli, tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert_one_line_error(cli("dev", "up", NODERR_API_PORT=str(port)), f"api 127.0.0.1:{port}",
                              "already in use")
    assert not (tmp_path / "state" / "noderr.db").exists()
