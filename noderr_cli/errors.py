"""Ordinary mistakes become one-line errors naming what to fix, with a non-zero exit.

`NoderrGroup` (the `noderr` command's group class) catches the typed errors of the domain and the
local stack, and the few library errors a wrong setting surfaces (a refused S3 request, a database
that is not reachable or not migrated, an unreachable RPC), and turns each into a
`click.ClickException`: ``Error: <what is wrong and what to do>``, exit status 1. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import click


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(part.strip() for part in text.splitlines()[:2] if part.strip())


def _rpc_url() -> str:
    from noderr_core.settings import get_settings

    return get_settings().chain_rpc_url


def _database_url() -> str:
    from noderr_core.db import redacted_url
    from noderr_core.settings import get_settings

    return redacted_url(get_settings().resolved_database_url)


def _explain_database(exc: Exception) -> str | None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    detail = _first_line(getattr(exc, "orig", None) or exc)
    if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
        return (f"the database at {_database_url()} has no platform tables: "
                "run `noderr db upgrade` first")
    return (f"the database at {_database_url()} cannot be used ({detail}): check "
            "NODERR_DATABASE_URL and that the server is running")


def _explain_s3(exc: Exception) -> str | None:
    try:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, ParamValidationError):
        bucket = re.search(r'Invalid bucket name "([^"]*)"', str(exc))
        if bucket:
            return (f"{bucket.group(1)!r} is not a valid S3 bucket name: use 3-63 lowercase letters, "
                    "digits, dots and hyphens (check NODERR_MODEL_BUCKET or the s3:// URI)")
        return f"S3 refused the request: {_first_line(exc)} (check NODERR_MODEL_BUCKET and the s3:// URI)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return (f"S3 answered {error.get('Code', 'an error')}: {error.get('Message', _first_line(exc))} "
                "(check the bucket name, NODERR_S3_* credentials and endpoint)")
    if isinstance(exc, BotoCoreError):
        return f"S3 request failed: {_first_line(exc)} (check NODERR_S3_ENDPOINT_URL)"
    return None


def _explain_chain(exc: Exception) -> str | None:
    import requests

    from noderr_core.chain.client import ChainUnavailable

    if isinstance(exc, ChainUnavailable):
        return f"{exc}. Is the chain running at {_rpc_url()}? (`noderr dev up` starts one)"
    # web3 talks HTTP through requests: only its connection errors mean "the RPC is not there".
    # (S3Unreachable, also a ConnectionError, is a typed error answered before this.)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
                  | ConnectionRefusedError):
        return (f"chain RPC {_rpc_url()} is not reachable: start it with `noderr dev up`, "
                "or set NODERR_CHAIN_RPC_URL")
    return None


def _typed_errors() -> tuple[type[BaseException], ...]:
    """Domain and local-stack errors whose message already says what to fix."""
    from noderr_core.chain.addresses import ChainNotDeployed
    from noderr_core.chain.client import TransactionReverted
    from noderr_core.db import DatabaseUrlError
    from noderr_core.keys import SigningKeyMissing
    from noderr_core.modelstore.objects import ModelSourceError
    from noderr_core.modelstore.packaging import InvalidModelFile
    from noderr_core.modelstore.registry import RegistryError
    from noderr_core.nodes import NodeActionError
    from noderr_core.rewards.claims import InvalidWallet
    from noderr_core.storage.s3 import S3Unreachable
    from noderr_core.tasks.clients import ClientError
    from noderr_local.stack import StackAlreadyRunning

    return (ChainNotDeployed, TransactionReverted, DatabaseUrlError, SigningKeyMissing,
            ModelSourceError, InvalidModelFile, RegistryError, NodeActionError, InvalidWallet,
            S3Unreachable, ClientError, StackAlreadyRunning)


EXPLAINERS: tuple[Callable[[Exception], str | None], ...] = (
    _explain_database, _explain_s3, _explain_chain,
)


def explain(exc: Exception) -> str | None:
    """The one-line message for an ordinary mistake, or None for a bug."""
    if isinstance(exc, _typed_errors()):
        return _first_line(exc)
    for explainer in EXPLAINERS:
        message = explainer(exc)
        if message:
            return message
    return None


class NoderrGroup(click.Group):
    """A click group whose commands report ordinary mistakes as one line (see the module doc)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            message = explain(exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc
