"""Fragments of one item sent by one principal add up across requests within the window."""

from __future__ import annotations

import httpx

from tests.conftest import Gateway
from tests.test_articles_e2e import NDA

LONG = ("第一章では、推論サーバーの負荷分散を、要求ごとの推定トークン数に基づいて行う方式を説明する。"
        "第二章では、キャッシュの置換を直近の参照間隔と再計算コストの積で判断する方式を述べる。"
        "第三章では、障害時にモデルの重みを別の領域から段階的に読み込み直し、応答の遅延を一定に保つ手順を示す。"
        "第四章では、利用者ごとの上限を超えた要求を別の待ち行列へ移し、優先度を時刻とともに上げる規則を定める。")


def test_halves_sent_in_two_requests_add_up(gateway: Gateway) -> None:
    gateway.admin.post("/admin/v1/agreements", json=NDA)
    item = gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={
        "title": "推論基盤設計", "category": "ai_technology", "text": LONG}).json()
    policy = gateway.admin.get("/admin/v1/policy").json()
    policy["thresholds"]["fingerprint"]["min_item_coverage"] = 0.6  # a company that tolerates small quotes
    assert gateway.admin.put("/admin/v1/policy", json=policy).status_code == 200
    key = gateway.employee("hanako@example.co.jp", ("rd",))

    def send(text: str) -> httpx.Response:
        return httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})

    half = len(LONG) // 2
    first = send(LONG[:half])
    assert first.status_code == 200  # under half of the item: tolerated on its own
    second = send(LONG[half:])
    assert second.status_code == 403, second.text  # together the two requests carry the whole item
    assert second.json()["error"]["matches"][0]["item_id"] == item["id"]
    other = gateway.employee("jiro@example.co.jp", ("rd",))
    alone = httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {other}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": LONG[half:]}]})
    assert alone.status_code == 200  # another principal's window is their own
