"""`shuhi demo`: a local demo upstream, a SQLite store, a demo employee with a key, and curl lines to try."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from gateway.demo.upstream import UpstreamServer
from gateway.keyring import keyed_hash, load_secret_key, new_admin_token, new_gateway_key
from gateway.settings import Settings, load_settings
from gateway.storage import principals
from gateway.storage.database import migrate, open_engine

DEMO_PRINCIPAL = "demo.employee@example.co.jp"


@dataclass
class PreparedDemo:
    settings: Settings
    upstream: UpstreamServer
    key: str
    admin_token: str
    banner: str


def _curl(port: int, key: str, path: str, body: str, extra: str = "") -> str:
    return (f"curl -s http://127.0.0.1:{port}{path} -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json'{extra} -d {shlex.quote(body)}")


def prepare_demo(data_dir: Path, port: int) -> PreparedDemo:
    """Start the demo upstream and prepare a store that points at it; the caller serves the gateway."""
    upstream = UpstreamServer()
    upstream.start()
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_token = new_admin_token()
    settings = load_settings(
        None, {}, database_url=f"sqlite:///{(data_dir / 'shuhi.db').resolve()}", admin_token=admin_token,
        destinations=[
            {"id": "demo-openai", "base_url": upstream.openai_base_url, "api_format": "openai",
             "models": ["gpt-4o-mini", "text-embedding-3-small"], "third_party": True},
            {"id": "demo-anthropic", "base_url": upstream.anthropic_base_url, "api_format": "anthropic",
             "models": ["claude-sonnet-4-6"], "third_party": True},
        ],
        files_destination="demo-openai",
    )
    engine = open_engine(settings.database_url)
    migrate(engine)
    secret = load_secret_key(settings)
    if principals.get_principal(engine, DEMO_PRINCIPAL) is None:
        principals.create_principal(engine, DEMO_PRINCIPAL, ["research"])
    key, prefix = new_gateway_key()
    principals.create_key(engine, DEMO_PRINCIPAL, keyed_hash(secret, key), prefix)
    engine.dispose()
    chat = ('{"model": "gpt-4o-mini", "messages": [{"role": "user", '
            '"content": "来週の社内勉強会のアジェンダ案を三つ挙げてください。"}]}')
    claude = ('{"model": "claude-sonnet-4-6", "max_tokens": 256, "messages": [{"role": "user", '
              '"content": "Summarise the agenda of our weekly sync."}]}')
    banner = "\n".join([
        "Shuhi demo / 守秘デモ",
        f"  gateway     http://127.0.0.1:{port}   (store: {data_dir / 'shuhi.db'})",
        f"  upstream    {upstream.url}   (local demo provider; nothing leaves this machine)",
        f"  admin token {admin_token}",
        f"  gateway key {key}   (principal {DEMO_PRINCIPAL})",
        "",
        "通過するリクエスト / a request that passes (OpenAI format):",
        "  " + _curl(port, key, "/v1/chat/completions", chat),
        "Anthropic 形式 / the same through the Anthropic format:",
        "  " + _curl(port, key, "/v1/messages", claude, " -H 'anthropic-version: 2023-06-01'"),
        "",
    ])
    return PreparedDemo(settings=settings, upstream=upstream, key=key, admin_token=admin_token, banner=banner)
