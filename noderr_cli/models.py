"""`noderr models ...`: list versions, publish an ONNX file, promote, roll back (CLI adapter).

The Dagster `models` group is the primary path (checks + metadata in the UI); these commands run
the same core functions for operators without the UI, and write the same audit entries.
"""

from __future__ import annotations

import click

from noderr_core.settings import get_settings


def _session_factory():
    from noderr_core.db import engine_for_settings, make_session_factory

    return make_session_factory(engine_for_settings(get_settings()))


def _cli_actor():
    import getpass

    from noderr_core.audit import Actor

    return Actor("system", None, f"cli:{getpass.getuser()}")


@click.group("models")
def models() -> None:
    """Model versions in the beacon: list, publish a file, promote, roll back."""


@models.command("list")
@click.option("--name", default=None, help="only this model")
def list_versions(name: str | None) -> None:
    from noderr_core.modelstore import current_beacon_sequence, list_model_versions

    with _session_factory()() as session:
        click.echo(f"beacon sequence {current_beacon_sequence(session)}")
        for row in list_model_versions(session, name):
            click.echo(f"{row.name:<24} v{row.version:<4} {row.status:<8} {row.rollout_percent:>3}% "
                       f"{row.sha256[:12]}  {row.size_bytes} bytes  {row.source}")


@models.command("publish-file")
@click.argument("source")
@click.option("--name", required=True, help="model name in the beacon (a-z, 0-9, -, _)")
@click.option("--accuracy", type=float, default=None, help="declared hold-out accuracy")
def publish_file(source: str, name: str, accuracy: float | None) -> None:
    """Check, package, upload and publish (staged) an ONNX file: local path or s3:// URI."""
    from noderr_core.keys import model_signing_key
    from noderr_core.modelstore import checks, delivery
    from noderr_core.modelstore.objects import read_model_source
    from noderr_core.storage.s3 import ensure_bucket, make_s3_client

    settings = get_settings()
    client = make_s3_client(settings)
    data = read_model_source(source, client)
    for outcome in (checks.check_onnx_graph(data), checks.check_runs(data)):
        if not outcome.passed:
            raise click.ClickException(f"{outcome.description}: nothing was published")
    ensure_bucket(client, settings.model_bucket, settings.s3_region)
    key = model_signing_key(settings)
    metrics = {"holdout_accuracy": accuracy} if accuracy is not None else {}
    with _session_factory()() as session:
        packaged = delivery.package_model(session, name=name, onnx_bytes=data, source=source,
                                          metrics=metrics, signing_key=key)
        session.rollback()
        stored = delivery.store_model_bytes(client, settings.model_bucket, packaged)
        outcome = delivery.publish_stored_model(
            session, client, bucket=settings.model_bucket, signed_manifest=packaged.signed_manifest,
            object_key=stored.key, source=source, actor=_cli_actor(), signing_key=key,
        )
        session.commit()
        row = outcome.model_version
        verb = "published" if outcome.created else "already published"
        click.echo(f"{verb}: {row.name} v{row.version} ({row.status}) sha256 {row.sha256}")


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("to_status", type=click.Choice(["canary", "active", "retired", "staged"]))
@click.option("--percent", type=int, default=None, help="rollout percentage for canary (1-99)")
def promote(name: str, version: int, to_status: str, percent: int | None) -> None:
    from noderr_core.modelstore import RegistryError, promote_model_version

    with _session_factory()() as session:
        try:
            row = promote_model_version(session, model_name=name, version=version,
                                        to_status=to_status, rollout_percent=percent,
                                        actor=_cli_actor())
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        click.echo(f"{row.name} v{row.version} is now {row.status} ({row.rollout_percent}%)")


@models.command("rollback")
@click.argument("name")
@click.option("--to-version", type=int, default=None, help="default: previous active version")
def rollback(name: str, to_version: int | None) -> None:
    from noderr_core.modelstore import RegistryError, rollback_model

    with _session_factory()() as session:
        try:
            row = rollback_model(session, model_name=name, to_version=to_version, actor=_cli_actor())
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
        click.echo(f"{row.name} rolled back: v{row.version} is active")
