"""`shuhi demo`: a local demo upstream, a SQLite store, a demo employee with a key, and curl lines to try."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from gateway.demo.upstream import UpstreamServer
from gateway.domain import Category
from gateway.keyring import keyed_hash, load_secret_key, new_admin_token, new_gateway_key
from gateway.registration import Material, RegistryService
from gateway.settings import Settings, load_settings
from gateway.storage import agreements, principals
from gateway.storage.database import migrate, open_engine

DEMO_PRINCIPAL = "demo.employee@example.co.jp"
DEMO_AGREEMENT = {
    # Modelled on the seed NDA: Article 3(1) purpose, Article 11 term and survival, Article 3(3) need-to-know.
    "id": "nda-demo-hoshizora", "title": "AI技術秘密保持契約（デモ）/ AI technology NDA (demo)",
    "counterparty": "株式会社ホシゾラ・ラボ (demo)", "purpose": "画像検索モデルの共同開発の可否の検討",
    "effective_date": dt.date(2026, 4, 1), "term_years": 3, "survival_years": 2,
    "authorized_principals": [], "authorized_groups": ["research"],
}
# Demo material written for this demo: what the counterparty might disclose under Article 2(1)(1).
DEMO_MATERIAL = ("ホシゾラ検索モデルは、画像特徴を四段のピラミッドで抽出し、各段の出力を学習済みの量子化辞書で"
                 "二百五十六語に圧縮してから、語彙の共起統計で再順位付けを行う。辞書は毎週、新着画像の上位一パーセントで"
                 "更新され、旧辞書との距離が閾値を超えた語だけが置き換えられる。")


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
    if agreements.get_agreement_row(engine, DEMO_AGREEMENT["id"]) is None:
        agreements.create_agreement(engine, dict(DEMO_AGREEMENT))
        RegistryService(engine, secret).register_item(str(DEMO_AGREEMENT["id"]), Material(
            title="ホシゾラ検索モデル設計メモ", category=Category.AI_TECHNOLOGY, text=DEMO_MATERIAL))
    engine.dispose()
    leak = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "この設計を英語で説明して: "
                                                               + DEMO_MATERIAL[:90]}]}, ensure_ascii=False)
    approve = (f"curl -s -X POST http://127.0.0.1:{port}/admin/v1/consent-requests/<consent_request_id>/approve "
               f"-H 'Authorization: Bearer {admin_token}' -H 'Content-Type: application/json' "
               "-d '{\"evidence\": {\"reference\": \"demo consent letter 2026-11-27\"}, \"granted_by\": \"legal\"}'")
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
        "拒否されるリクエスト（契約の秘密情報を含む、第4条第2項）/ a request that is refused (Article 4(2)):",
        "  " + _curl(port, key, "/v1/chat/completions", leak),
        "同意を記録する（応答の consent_request_id を入れる）/ record the discloser's consent (use the consent_request_id):",
        "  " + approve,
        "もう一度送ると通過し、応答に秘密表示が付く（第4条第3項）/ send it again: it passes, marked confidential "
        "(Article 4(3)) — add -i to see the X-Confidential headers.",
        "",
    ])
    return PreparedDemo(settings=settings, upstream=upstream, key=key, admin_token=admin_token, banner=banner)
