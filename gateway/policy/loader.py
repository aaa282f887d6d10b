"""Reading policy files: validate everything first, fail naming file and field, reload when the file changes.

This is the only module of `gateway.policy` that touches the file system. A
policy that does not validate is never half-applied: `load_policy` raises
`PolicyError` before any `Policy` exists, and `PolicyStore.refresh()` keeps
enforcing the last good policy when an edited file is broken, so a typo made
while the gateway runs cannot switch enforcement off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.policy.schema import CATEGORY_KEYS, Action, Policy

__all__ = ["PolicyError", "PolicyStore", "check_policy_file", "load_policy", "policy_from_dict"]


class PolicyError(ValueError):
    """A policy document that cannot be used; `problems` lists each as `file: field: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("; ".join(problems) if problems else f"{source}: invalid policy")


def _field_path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _problems(source: str, error: ValidationError) -> list[str]:
    return [f"{source}: {_field_path(tuple(e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)]


def policy_from_dict(data: Mapping[str, Any] | None, source: str = "<policy>") -> Policy:
    """A validated `Policy` from parsed YAML or the JSON of `PUT /admin/v1/policy`.

    An empty document is refused rather than read as "all defaults": an
    empty file is more likely a failed deploy than a deliberate choice.
    """
    if not isinstance(data, Mapping) or not data:
        raise PolicyError(source, [f"{source}: (document): expected a mapping of policy fields"])
    try:
        return Policy.model_validate(dict(data))
    except ValidationError as exc:
        raise PolicyError(source, _problems(source, exc)) from None


def _read_yaml(path: Path) -> Any:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(source, [f"{source}: cannot read: {exc.__class__.__name__}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise PolicyError(source, [f"{source}: {where}: {problem}"]) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """The policy in a YAML file, validated whole; `PolicyError` names the file and each bad field."""
    file = Path(path)
    return policy_from_dict(_read_yaml(file), str(file))


def _lint(policy: Policy, source: str) -> list[str]:
    """Settings that validate but depart from the seed NDA; reported so a reviewer decides knowingly."""
    found: list[str] = []
    if policy.provisional_window_days != 30:
        found.append(f"{source}: provisional_window_days: warning: {policy.provisional_window_days} days, "
                     "Article 2(1)(6) gives 30")
    for category in CATEGORY_KEYS:
        if policy.action(category, "third_party") is Action.ALLOW_MARKED:
            found.append(f"{source}: actions.{category}.third_party: warning: allow_marked sends material to "
                         "third parties without consent, which Article 4(2) forbids")
    if policy.unscannable.third_party == "allow":
        found.append(f"{source}: unscannable.third_party: warning: unscanned images and files may reach "
                     "third parties (Article 4(2))")
    return found


def check_policy_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of a policy file, for `shuhi policy check FILE`; empty when it is fine.

    Errors (the file would be refused) come first; lines containing
    `warning:` are settings that load but loosen the seed NDA.
    """
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return list(exc.problems)
    return _lint(policy, str(path))


class PolicyStore:
    """The active policy, reloaded when its file's modification time or size changes.

    The caller polls `refresh()` (every few seconds, or on a signal); readers
    call `current` on every request, which is a plain attribute read. A broken
    file leaves the previous policy in force and sets `last_error`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._policy = load_policy(self.path)
        self.last_error: PolicyError | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    @property
    def current(self) -> Policy:
        """The policy in force now."""
        return self._policy

    def refresh(self) -> bool:
        """Reload if the file changed; True when a new policy took effect.

        A missing or invalid file keeps the old policy and records the error,
        and the same broken version is not re-read until it changes again.
        """
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                policy = load_policy(self.path)
            except PolicyError as exc:
                self.last_error = exc
                return False
            self._policy = policy
            self.last_error = None
            return True

    def replace(self, policy: Policy) -> None:
        """Install a policy validated elsewhere (`PUT /admin/v1/policy`) until the file changes again."""
        with self._lock:
            self._policy = policy
