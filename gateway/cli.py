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
    from gateway.logs import log_config

    log_level = settings.log_level
    logging_config = log_config(settings.log_format, log_level)  # JSON lines by default, in every worker
    if workers > 1:
        # Worker processes build their own app from the environment, so hand the settings over through it.
        if config:
            os.environ["SHUHI_CONFIG"] = str(Path(config).resolve())
        uvicorn.run("gateway.app:create_app_from_environment", factory=True, host=host, port=port,
                    workers=workers, loop="uvloop", http="httptools", log_level=log_level, access_log=access_log,
                    log_config=logging_config)
        return
    uvicorn.run(create_app(settings), host=host, port=port, loop="uvloop", http="httptools",
                log_level=log_level, access_log=access_log, log_config=logging_config)


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


@main.command(help="資料をフォルダーごと登録する / Register the files under PATH as items of an agreement.")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--agreement", "agreement_id", required=True, help="agreement id")
@click.option("--category", required=True,
              type=click.Choice(["ai_technology", "data", "source_code", "business", "marked", "oral"]))
@click.pass_context
def register(ctx: click.Context, path: Path, agreement_id: str, category: str) -> None:
    from gateway.convert import MARKITDOWN_EXTENSIONS, SOURCE_EXTENSIONS, TEXT_EXTENSIONS
    from gateway.domain import Category
    from gateway.errors import GatewayError
    from gateway.keyring import load_secret_key
    from gateway.registration import Material, RegistryService
    from gateway.storage import agreements as store

    engine = _engine(ctx)
    row = store.get_agreement_row(engine, agreement_id)
    if row is None or row.destroyed_at is not None:
        raise click.ClickException(f"契約 '{agreement_id}' はありません / no such agreement (or destroyed)")
    known = MARKITDOWN_EXTENSIONS | SOURCE_EXTENSIONS | (TEXT_EXTENSIONS - {""})
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known and not p.name.startswith("."))
    service = RegistryService(engine, load_secret_key(_settings(ctx.find_root().obj["config"])))
    done, skipped, fingerprints = 0, [], 0
    with click.progressbar(files, label="登録中 / registering", item_show_func=lambda p: p.name if p else "") as bar:
        for file in bar:
            title = str(file.relative_to(path)) if path.is_dir() else file.name
            material = Material(title=title, category=Category(category), file=file.read_bytes(), filename=file.name)
            try:
                created = service.register_item(agreement_id, material)
            except GatewayError as exc:
                skipped.append(f"{title}: {exc.code}")
                continue
            done += 1
            fingerprints += created["fingerprints"]
    click.echo(f"登録 {done} 件、スキップ {len(skipped)} 件、指紋 {fingerprints} 個 / "
               f"registered {done}, skipped {len(skipped)}, fingerprints {fingerprints}")
    for line in skipped:
        click.echo(f"  skipped {line}", err=True)


@main.command("scan", help="テキストを登録資料と照合する（送信なし）/ Show what FILE (or - for stdin) would match.")
@click.argument("source", type=click.Path(allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def scan_command(ctx: click.Context, source: str, as_json: bool) -> None:
    from gateway.convert import to_text
    from gateway.domain import TextPart
    from gateway.keyring import load_secret_key
    from gateway.registration import RegistryService

    engine = _engine(ctx)
    if source == "-":
        text = sys.stdin.read()
    else:
        text = to_text(Path(source).read_bytes(), Path(source).name).text
    service = RegistryService(engine, load_secret_key(_settings(ctx.find_root().obj["config"])))
    service.load()
    matches = service.scan([TextPart(location="input", text=text)])
    rows = [{"agreement_id": m.agreement_id, "item_id": m.item_id, "category": m.category, "kind": m.kind,
             "start": m.start, "end": m.end, "score": round(m.score, 4), "item_coverage": round(m.item_coverage, 4),
             "request_coverage": round(m.request_coverage, 4), "encoding": m.encoding} for m in matches]
    if as_json:
        click.echo(json.dumps({"matches": rows}, ensure_ascii=False))
        return
    if not rows:
        click.echo("一致なし / no match")
    for r in rows:
        click.echo(f"{r['agreement_id']}  {r['item_id']}  {r['kind']:<11} [{r['start']}:{r['end']}]  "
                   f"item {r['item_coverage']:.0%}  request {r['request_coverage']:.0%}"
                   + (f"  via {r['encoding']}" if r["encoding"] else ""))


@main.group(help="ポリシー / Policies.")
def policy() -> None:
    pass


@policy.command("check", help="ポリシーファイルを検査する / Validate a policy file.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def policy_check(file: str) -> None:
    from gateway.policy.loader import check_policy_file

    problems = check_policy_file(file)
    errors = [p for p in problems if "warning:" not in p]
    for line in problems:
        click.echo(line, err=line in errors)
    if errors:
        raise SystemExit(1)
    click.echo(f"OK: {file}")


@main.group(help="監査ログ / The audit log: verify, export, prune.")
def audit() -> None:
    pass


@audit.command("verify", help="ハッシュチェーンを検証する / Verify the hash chain end to end (exit 1 if broken).")
@click.option("--expected-head", default=None, help="a head hash kept elsewhere: also detects a cut tail")
@click.pass_context
def audit_verify(ctx: click.Context, expected_head: str | None) -> None:
    from gateway.storage import audit_log

    result = audit_log.verify(_engine(ctx), expected_head)
    click.echo(json.dumps(result, ensure_ascii=False))
    ctx.exit(0 if result["ok"] else 1)


@audit.command("export", help="監査ログを書き出す / Export the audit log as JSONL or CSV.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--since", default=None, help="ISO 8601 time")
@click.option("--until", default=None, help="ISO 8601 time")
@click.option("--principal", default=None)
@click.option("--agreement-id", default=None)
@click.option("--decision", default=None)
@click.option("--kind", type=click.Choice(["decision", "outcome", "admin"]), default=None)
@click.option("--output", type=click.File("wb"), default="-")
@click.pass_context
def audit_export(ctx: click.Context, fmt: str, since: str | None, until: str | None, principal: str | None,
                 agreement_id: str | None, decision: str | None, kind: str | None, output: Any) -> None:
    from gateway.audit import parse_at
    from gateway.storage import audit_log

    try:
        filters = audit_log.Filters(since=parse_at(since) if since else None, until=parse_at(until) if until else None,
                                    principal=principal, agreement_id=agreement_id, decision=decision, kind=kind)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    export = audit_log.export_jsonl if fmt == "jsonl" else audit_log.export_csv
    for block in export(_engine(ctx), filters):
        output.write(block)


@audit.command("prune", help="保存期間を過ぎた記録を削除する / Delete records older than N days; the chain stays "
                             "verifiable from a checkpoint.")
@click.option("--days", required=True, type=click.IntRange(1))
@click.pass_context
def audit_prune(ctx: click.Context, days: int) -> None:
    from gateway.storage import audit_log

    click.echo(json.dumps(audit_log.prune(_engine(ctx), days, actor="cli", actor_role="admin"), ensure_ascii=False,
                          default=str))


def _engine(ctx: click.Context) -> Any:
    from gateway.storage.database import migrate as run_migrations
    from gateway.storage.database import open_engine

    settings = _settings(ctx.find_root().obj["config"])
    engine = open_engine(settings.database_url)
    run_migrations(engine)
    return engine


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
