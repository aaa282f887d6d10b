"""A labelled set for the PII evaluation: Faker values (ja_JP, en_US) placed in ordinary sentences.

Every sentence carries one value with its exact span and entity, so recall and
precision can be counted per entity. Values vary the way people type them:
full-width digits, grouped and ungrouped numbers, spaces or none between a
surname and a given name. Also used by `bench/pii_eval.py`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from faker import Faker

from gateway.pii import entities as E
from gateway.pii.checksums import corporate_number_check_digit, my_number_check_digit

_FULL = str.maketrans("0123456789-", "０１２３４５６７８９－")


@dataclass(frozen=True, slots=True)
class Sample:
    """One sentence with one PII value at `text[start:end]`."""

    text: str
    entity: str
    start: int
    end: int
    lang: str


def _place(template: str, value: str, entity: str, lang: str) -> Sample:
    start = template.index("{}")
    return Sample(template.replace("{}", value, 1), entity, start, start + len(value), lang)


def _my_number(rng: random.Random) -> str:
    body = "".join(rng.choice("0123456789") for _ in range(11))
    return body + my_number_check_digit(body)


def _corporate_number(rng: random.Random) -> str:
    body = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(11))
    return corporate_number_check_digit(body) + body


def _jp_phone(fake: Faker, rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        value = fake.phone_number()
        while not value.startswith("0"):  # Faker's ja_JP also emits numbers without the trunk 0: none is real
            value = fake.phone_number()
    elif kind < 0.6:
        value = rng.choice(["0120", "0800"]) + "-" + f"{rng.randint(100, 999)}-" + (
            f"{rng.randint(100, 999)}" if rng.random() < 0.5 else f"{rng.randint(1000, 9999)}")
        value = value if value.startswith("0120") or len(value.replace("-", "")) == 11 else value[:-3] + "123"
        if value.startswith("0800") and len(value.replace("-", "")) != 11:
            value = value + "4"
        if value.startswith("0120") and len(value.replace("-", "")) != 10:
            value = value[:-1]
    elif kind < 0.75:
        value = rng.choice(["090", "080", "070"]) + f"{rng.randint(1000, 9999)}{rng.randint(1000, 9999)}"
    elif kind < 0.9:
        area = rng.choice(["03", "06", "045", "052", "011", "092", "0466", "0555"])
        city = str(rng.randint(10 ** (5 - len(area)), 10 ** (6 - len(area)) - 1))
        value = f"{area}-{city}-{rng.randint(1000, 9999)}"
    else:
        value = f"+81-{rng.choice(['3', '6', '90', '80'])}-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        if value.split("-")[1] in ("3", "6"):
            pass
    return value.translate(_FULL) if rng.random() < 0.25 else value


def _card(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex", "jcb16", "discover"]))
    if rng.random() < 0.4 and len(number) == 16:
        sep = rng.choice([" ", "-"])
        number = sep.join(number[i:i + 4] for i in range(0, 16, 4))
    return number


def _ja_name(fake: Faker, rng: random.Random) -> str:
    sep = rng.choice([" ", " ", "　", ""])
    return fake.last_name() + sep + fake.first_name()


JA_TEMPLATES: dict[str, list[str]] = {
    E.PERSON: ["{}様からお問い合わせがありました。", "担当は{}です。", "{}さんに折り返し連絡してください。",
               "昨日、顧客の{}と打ち合わせをしました。", "顧客名：{}", "申込者 {} の審査が完了しました。",
               "{}氏の契約更新について確認をお願いします。"],
    E.PHONE_NUMBER: ["電話番号は{}です。", "携帯：{}", "ご連絡は{}までお願いします。", "TEL {}",
                     "連絡先 {} に折り返してください。"],
    E.JP_POSTAL_CODE: ["〒{} に送付してください。", "郵便番号は{}です。", "送付先：郵便番号 {}"],
    E.JP_ADDRESS: ["住所は{}です。", "{}へ書類を発送してください。", "本社所在地：{}",
                   "現住所 {} に変更がありました。"],
    E.JP_MY_NUMBER: ["マイナンバーは{}です。", "個人番号：{}", "個人番号カードの番号 {} を控えました。"],
    E.JP_CORPORATE_NUMBER: ["法人番号 {} の登記を確認しました。", "適格請求書発行事業者の登録番号はT{}です。",
                            "取引先の法人番号：{}"],
    E.JP_BANK_ACCOUNT: ["振込先は{bank}銀行 {branch}支店 普通 {}です。", "口座番号：{}（当座）",
                        "{bank}銀行 {branch}支店 普通預金 口座番号 {}"],
    E.EMAIL_ADDRESS: ["メールは{}までお送りください。", "連絡用アドレス：{}"],
    E.CREDIT_CARD: ["カード番号 {} で決済されました。", "クレジットカード：{}"],
}
EN_TEMPLATES: dict[str, list[str]] = {
    E.PERSON: ["{} will join the call tomorrow.", "Please forward the contract to {}.",
               "The customer, {}, asked for a refund.", "Yesterday I met {} to review the renewal."],
    E.EMAIL_ADDRESS: ["Please email {} with the invoice.", "Contact: {}", "Reply to {} by Friday."],
    E.PHONE_NUMBER: ["Call me at {} after lunch.", "Phone: {}", "You can reach the customer on {}."],
    E.CREDIT_CARD: ["My card number is {}.", "Charge card {} for the order.", "Card: {}"],
    E.IBAN_CODE: ["Wire the deposit to IBAN {}.", "Our account: {}", "Beneficiary IBAN {} (EUR)."],
}


def samples(per_template: int = 20, seed: int = 7) -> list[Sample]:
    """The labelled set: each template filled `per_template` times with fresh values."""
    rng = random.Random(seed)
    ja, en = Faker("ja_JP"), Faker("en_US")
    ja.seed_instance(seed)
    en.seed_instance(seed)
    ibans = [Faker(locale) for locale in ("de_DE", "fr_FR", "nl_NL", "en_GB", "es_ES", "it_IT")]
    for index, fake in enumerate(ibans):
        fake.seed_instance(seed + index)
    values: dict[tuple[str, str], Callable[[], str]] = {
        ("ja", E.PERSON): lambda: _ja_name(ja, rng),
        ("ja", E.PHONE_NUMBER): lambda: _jp_phone(ja, rng),
        ("ja", E.JP_POSTAL_CODE): lambda: ja.zipcode().translate(_FULL) if rng.random() < 0.2 else ja.zipcode(),
        ("ja", E.JP_ADDRESS): lambda: ja.address(),
        ("ja", E.JP_MY_NUMBER): lambda: (lambda v: v if rng.random() < 0.5 else
                                         rng.choice([" ", "-"]).join((v[:4], v[4:8], v[8:])))(_my_number(rng)),
        ("ja", E.JP_CORPORATE_NUMBER): lambda: _corporate_number(rng),
        ("ja", E.JP_BANK_ACCOUNT): lambda: f"{rng.randint(0, 9999999):07d}",
        ("ja", E.EMAIL_ADDRESS): lambda: ja.email(),
        ("ja", E.CREDIT_CARD): lambda: _card(en, rng),
        ("en", E.PERSON): lambda: en.name(),
        ("en", E.EMAIL_ADDRESS): lambda: en.email(),
        ("en", E.PHONE_NUMBER): lambda: en.phone_number(),
        ("en", E.CREDIT_CARD): lambda: _card(en, rng),
        ("en", E.IBAN_CODE): lambda: rng.choice(ibans).iban(),
    }
    out: list[Sample] = []
    for lang, table in (("ja", JA_TEMPLATES), ("en", EN_TEMPLATES)):
        for entity, templates in table.items():
            for template in templates:
                for _ in range(per_template):
                    filled = template.replace("{bank}", ja.last_name()).replace("{branch}", ja.city().rstrip("市区町村"))
                    out.append(_place(filled, values[(lang, entity)](), entity, lang))
    return out


@dataclass
class Tally:
    """Counts for one entity: found values, missed values, findings that were not a labelled value."""

    found: int = 0
    missed: int = 0
    false: int = 0

    @property
    def recall(self) -> float:
        return self.found / (self.found + self.missed) if self.found + self.missed else 1.0

    @property
    def precision(self) -> float:
        return self.found / (self.found + self.false) if self.found + self.false else 1.0


COVERAGE = 0.8  # a value counts as found when findings of its entity cover 80% of it (what redaction removes)


def tally(labelled: list[Sample], findings: list[list[tuple[str, int, int]]]) -> dict[str, Tally]:
    """Recall per entity over the values, precision per entity over the findings (overlap with a value of the
    same entity)."""
    tallies: dict[str, Tally] = {}
    for sample, found in zip(labelled, findings, strict=True):
        gold = tallies.setdefault(sample.entity, Tally())
        covered = set()
        for entity, start, end in found:
            if entity == sample.entity:
                covered |= set(range(max(start, sample.start), min(end, sample.end)))
        if len(covered) >= COVERAGE * (sample.end - sample.start):
            gold.found += 1
        else:
            gold.missed += 1
        for entity, start, end in found:
            if not (entity == sample.entity and start < sample.end and sample.start < end):
                tallies.setdefault(entity, Tally()).false += 1
    return tallies
