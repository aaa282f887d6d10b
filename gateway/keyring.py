"""The deployment secret and what is derived from it: keyed hashes of gateway keys and admin tokens.

The secret comes from `SHUHI_SECRET_KEY`, or is generated once and kept in a file
beside the SQLite store. With PostgreSQL it must be given: replicas have to share it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gateway.settings import Settings, SettingsError

SECRET_FILE = ".shuhi-secret"
GATEWAY_KEY_PREFIX = "sk-shuhi-"


def load_secret_key(settings: Settings) -> bytes:
    """The deployment secret, generating and keeping one for a SQLite store on first start."""
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if len(value) < 16:
            raise SettingsError("SHUHI_SECRET_KEY: must be at least 16 characters")
        return value.encode()
    if not settings.is_sqlite:
        raise SettingsError("SHUHI_SECRET_KEY: required with PostgreSQL, so that every replica shares it")
    path = settings.store_directory / SECRET_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip().encode()
    value = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value.encode()


def keyed_hash(secret: bytes, value: str) -> str:
    """HMAC-SHA256: a stolen table of hashes cannot be checked against guesses without the secret."""
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()


def new_gateway_key() -> tuple[str, str]:
    """A fresh gateway key and the prefix shown in listings (never enough to use it)."""
    key = GATEWAY_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(GATEWAY_KEY_PREFIX) + 4]


def new_admin_token() -> str:
    return "shuhi-admin-" + secrets.token_urlsafe(32)


def token_id_for(secret: bytes, token: str) -> str:
    """A stable id for the bootstrap admin token, so restarts do not add rows."""
    return "tok_boot_" + keyed_hash(secret, "id:" + token)[:12]


def secret_file_path(directory: Path) -> Path:
    return directory / SECRET_FILE


def _derived_key(secret: bytes, purpose: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"shuhi", info=purpose.encode()).derive(secret)


def seal(secret: bytes, plaintext: bytes, purpose: str) -> bytes:
    """AES-GCM under a key derived for `purpose`: what must be matched verbatim (terms, record cells) is kept
    only in this form at rest, so the store alone discloses nothing (Article 5(3))."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(_derived_key(secret, purpose)).encrypt(nonce, plaintext, purpose.encode())


def unseal(secret: bytes, sealed: bytes, purpose: str) -> bytes:
    """The plaintext of `seal`; raises if the secret differs or the bytes were altered."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(_derived_key(secret, purpose)).decrypt(sealed[:12], sealed[12:], purpose.encode())
