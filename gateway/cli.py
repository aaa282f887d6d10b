"""The `shuhi` command: serve the gateway, run the demo, administer the local store."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.settings import Settings, SettingsError, load_settings


def _settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _serve(settings: Settings, host: str, port: int, workers: int, access_log: bool,
           config: str | None = None) -> None:
    import uvicorn

    from gateway.app import create_app

    log_level = settings.log_level
    if workers > 1:
        # Worker processes build their own app from the environment, so hand the settings over through it.
        if config:
            os.environ["SHUHI_CONFIG"] = str(Path(config).resolve())
        uvicorn.run("gateway.app:create_app_from_environment", factory=True, host=host, port=port,
                    workers=workers, loop="uvloop", http="httptools", log_level=log_level, access_log=access_log)
        return
    uvicorn.run(create_app(settings), host=host, port=port, loop="uvloop", http="httptools",
                log_level=log_level, access_log=access_log)


@click.group(help="Shuhi (守秘): AI API 向け秘密保持ゲートウェイ / a confidentiality gateway for AI APIs.")
@click.option("--config", envvar="SHUHI_CONFIG", type=click.Path(dir_okay=False),
              help="YAML settings file (SHUHI_* variables win over it).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    ctx.obj = {"config": config}


@main.command(help="ゲートウェイを起動する / Start the gateway.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="worker processes (SQLite serialises writes: prefer PostgreSQL with several)")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int, access_log: bool) -> None:
    _serve(_settings(ctx.obj["config"]), host, port, workers, access_log, ctx.obj["config"])


@main.command(help="ストアを最新のスキーマに移行する / Migrate the store to the newest schema.")
@click.pass_context
def migrate(ctx: click.Context) -> None:
    from gateway.storage.database import migrate as run_migrations
    from gateway.storage.database import open_engine

    settings = _settings(ctx.obj["config"])
    engine = open_engine(settings.database_url)
    run_migrations(engine)
    engine.dispose()
    click.echo("migrated / 移行しました")


@main.command(help="デモ用の上流とゲートウェイを起動する / Start the gateway with a local demo upstream.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--data-dir", default=".shuhi-demo", show_default=True, type=click.Path(file_okay=False),
              help="where the demo's SQLite store lives")
def demo(port: int, data_dir: str) -> None:
    from gateway.demo.setup import prepare_demo

    prepared = prepare_demo(Path(data_dir), port)
    click.echo(prepared.banner)
    try:
        _serve(prepared.settings, "127.0.0.1", port, 1, False)
    finally:
        prepared.upstream.stop()


@main.group(help="社員とゲートウェイキー / Principals and gateway keys.")
def principals() -> None:
    pass


@principals.command("add", help="社員またはサービスを登録する / Register a principal.")
@click.argument("principal_id")
@click.option("--group", "groups", multiple=True, help="a group the principal belongs to (repeatable)")
@click.pass_context
def principals_add(ctx: click.Context, principal_id: str, groups: tuple[str, ...]) -> None:
    from gateway.storage import principals as store

    engine = _engine(ctx)
    try:
        click.echo(json.dumps(store.create_principal(engine, principal_id, list(groups)), ensure_ascii=False))
    except store.DuplicateError:
        raise click.ClickException(f"principal '{principal_id}' は既にあります / exists already") from None


@principals.command("key", help="ゲートウェイキーを発行する（一度だけ表示）/ Issue a gateway key (shown once).")
@click.argument("principal_id")
@click.pass_context
def principals_key(ctx: click.Context, principal_id: str) -> None:
    from gateway.keyring import keyed_hash, load_secret_key, new_gateway_key
    from gateway.storage import principals as store

    engine = _engine(ctx)
    if store.get_principal(engine, principal_id) is None:
        raise click.ClickException(f"principal '{principal_id}' はありません / does not exist")
    key, prefix = new_gateway_key()
    secret = load_secret_key(_settings(ctx.find_root().obj["config"]))
    created = store.create_key(engine, principal_id, keyed_hash(secret, key), prefix)
    click.echo(json.dumps({**created, "key": key}, ensure_ascii=False))


def _engine(ctx: click.Context) -> Any:
    from gateway.storage.database import migrate as run_migrations
    from gateway.storage.database import open_engine

    settings = _settings(ctx.find_root().obj["config"])
    engine = open_engine(settings.database_url)
    run_migrations(engine)
    return engine


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
