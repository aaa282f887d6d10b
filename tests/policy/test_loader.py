"""Loading policies: the shipped files load, errors name file and field, the store reloads on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.policy import Action, Policy, PolicyError, PolicyStore, check_policy_file, load_policy, policy_from_dict
from gateway.policy.schema import CATEGORY_KEYS, DESTINATION_KINDS

from .conftest import POLICIES


@pytest.mark.parametrize("name", ["default", "strict", "permissive"])
def test_shipped_policies_load(name: str) -> None:
    policy = load_policy(POLICIES / f"{name}.yaml")
    assert policy.name == name
    assert policy.provisional_window_days == 30
    for category in CATEGORY_KEYS:
        for kind in DESTINATION_KINDS:
            assert isinstance(policy.action(category, kind), Action)
        assert policy.action(category, "training") in (Action.BLOCK, Action.CONSENT_REQUIRED)


def test_default_policy_matches_the_contract(default_policy: Policy) -> None:
    assert default_policy.action("source_code", "third_party") is Action.CONSENT_REQUIRED
    assert default_policy.action("derived", "internal") is Action.ALLOW_MARKED
    assert default_policy.unscannable.third_party == "block"
    assert default_policy.unscannable.internal == "allow"


def test_shipped_default_and_strict_have_no_problems() -> None:
    assert check_policy_file(POLICIES / "default.yaml") == []
    assert check_policy_file(POLICIES / "strict.yaml") == []
    assert all("warning:" in p for p in check_policy_file(POLICIES / "permissive.yaml"))


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "field"), [
    ("actions:\n  data:\n    third_party: ignore\n", "actions.data.third_party"),
    ("actions:\n  data:\n    training: redact\n", "actions.data.training"),
    ("actions:\n  data:\n    internal: allow\n", "actions.data.internal"),
    ("actions:\n  dataset: {}\n", "actions.dataset"),
    ("thresholds:\n  fingerprint:\n    min_score: 1.5\n", "thresholds.fingerprint.min_score"),
    ("thresholds:\n  fingerprint:\n    min_chars: -1\n", "thresholds.fingerprint.min_chars"),
    ("unscannable:\n  third_party: redact\n", "unscannable.third_party"),
    ("provisional_window_days: 0\n", "provisional_window_days"),
    ("messages:\n  blocked:\n    ja: '{prompt}'\n    en: x\n", "messages.blocked"),
    ("marking:\n  label:\n    ja: '{counterparty}'\n    en: x\n", "marking.label"),
    ("marking:\n  visble_label: true\n", "marking.visble_label"),
    ("version: 2\n", "version"),
    ("actions:\n  default:\n    third_party: block\n", "actions.default"),
])
def test_loader_error_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(path) in str(raised.value)
    assert any(p.startswith(f"{path}: {field}") for p in raised.value.problems), raised.value.problems


def test_loader_reports_yaml_syntax_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nactions: [unclosed\n")
    with pytest.raises(PolicyError, match=r"policy\.yaml: line \d+"):
        load_policy(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_loader_refuses_empty_or_non_mapping_documents(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match="expected a mapping"):
        load_policy(write(tmp_path, text))


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")


def test_check_policy_file_lists_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "actions:\n  data: {third_party: nope}\nthresholds:\n  pii: {min_score: 2}\n")
    problems = check_policy_file(path)
    assert len(problems) == 2
    assert any("actions.data.third_party" in p for p in problems)
    assert any("thresholds.pii.min_score" in p for p in problems)


def test_check_policy_file_warns_about_departures_from_the_nda(tmp_path: Path) -> None:
    path = write(tmp_path, "provisional_window_days: 20\nactions:\n  business: {third_party: allow_marked}\n")
    problems = check_policy_file(path)
    assert any("provisional_window_days: warning" in p for p in problems)
    assert any("actions.business.third_party: warning" in p for p in problems)


def test_policy_round_trips_through_json(strict_policy: Policy) -> None:
    again = policy_from_dict(strict_policy.model_dump(mode="json"))
    assert again == strict_policy
    assert again.action("source_code", "internal") is Action.REDACT


def test_category_override_falls_back_to_default_row_per_field() -> None:
    policy = policy_from_dict({"actions": {"default": {"third_party": "block", "internal": "allow_marked",
                                                       "training": "block"},
                                           "data": {"third_party": "redact"}}})
    assert policy.action("data", "third_party") is Action.REDACT
    assert policy.action("data", "training") is Action.BLOCK
    assert policy.action("new_category", "third_party") is Action.BLOCK


def test_store_reloads_when_the_file_changes_and_keeps_the_last_good_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "name: first\n")
    store = PolicyStore(path)
    assert store.current.name == "first" and store.refresh() is False

    write(tmp_path, "name: second\nactions:\n  default: {third_party: block, internal: allow_marked, "
                    "training: block}\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert store.refresh() is True
    assert store.current.name == "second"
    assert store.current.action("data", "third_party") is Action.BLOCK

    write(tmp_path, "name: third\nactions: {data: {third_party: sideways}}\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000))
    assert store.refresh() is False
    assert store.current.name == "second"  # a broken edit does not switch enforcement off
    assert store.last_error is not None and "actions.data.third_party" in str(store.last_error)

    path.unlink()
    assert store.refresh() is False and store.current.name == "second"


def test_store_replace_installs_a_validated_policy(tmp_path: Path) -> None:
    store = PolicyStore(write(tmp_path, "name: file\n"))
    store.replace(policy_from_dict({"name": "api"}))
    assert store.current.name == "api"
