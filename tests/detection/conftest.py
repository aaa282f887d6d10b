"""Shared text for the detection tests: realistic Japanese and English prose, written for these tests."""

from __future__ import annotations

import pytest

from gateway.detection.registry import Registry

SECRET = b"test-deployment-secret-0123456789"

JA_DESIGN = (
    "本システムの推論サーバーは、受信したリクエストを優先度付きキューに格納し、GPUごとに最大三十二件まで"
    "バッチ化して処理する。バッチの締め切りは到着から八ミリ秒とし、締め切りを過ぎた場合は件数に関わらず"
    "即座に推論を開始する。モデルの重みは半精度で保持し、注意機構のキーとバリューは直近四千九十六トークン分を"
    "リングバッファに保存する。評価用データセットは顧客の問い合わせ履歴から個人情報を除去したうえで作成し、"
    "正答率が九十二パーセントを下回った場合は前の版に自動で切り戻す運用とする。"
)

EN_PLAN = (
    "The pricing engine recomputes every enterprise quote overnight. It pulls the previous quarter's usage from "
    "the warehouse, applies the volume tiers negotiated with each account, and flags any quote whose margin "
    "falls below eighteen percent for review by the regional sales director. Accounts in the pilot program "
    "receive a fixed discount of twelve percent until the renewal date, after which the standard tiers apply. "
    "The model that predicts churn is retrained monthly on support tickets and invoice delays."
)

EN_UNRELATED = (
    "Could you help me write a friendly reminder to my team about tomorrow's offsite? We meet at nine in the "
    "lobby, the bus leaves at half past, and lunch is provided. Please keep it short and upbeat."
)

JA_UNRELATED = (
    "来週の懇親会について、参加者へのお知らせ文を作成してください。会場は駅前のレストランで、"
    "開始は午後七時です。会費は四千円で、当日受付で集めます。"
)

PY_SOURCE = '''
import math


def schedule_learning_rate(step, warmup_steps=4000, base_rate=3e-4, decay=0.5):
    """Inverse square root schedule with a linear warmup (internal recipe v3)."""
    # warm up linearly, then decay with the inverse square root of the step
    if step < warmup_steps:
        return base_rate * step / warmup_steps
    scale = math.sqrt(warmup_steps / step)
    return base_rate * scale ** decay


def clip_gradients(grads, max_norm=1.0):
    total = math.sqrt(sum(float(g * g) for g in grads))  # global norm
    if total > max_norm:
        factor = max_norm / (total + 1e-6)
        return [g * factor for g in grads]
    return grads
'''


@pytest.fixture
def registry() -> Registry:
    return Registry(SECRET)
