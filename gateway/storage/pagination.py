"""Cursor pagination shared by the list endpoints: `{"data": [...], "next_cursor": ...}`."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Column, Select

from gateway.errors import InvalidRequest


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        if not decoded or "\x00" in decoded:  # PostgreSQL's text holds no NUL: never an id
            raise ValueError("not a cursor")
        return decoded
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor が不正です。 / The cursor is malformed.", code="invalid_cursor",
                             param="cursor") from None


def page(query: Select[Any], id_column: Column[Any], limit: int, cursor: str | None) -> Select[Any]:
    """Order by id, start after the cursor, fetch one more than asked to know if a next page exists."""
    if cursor:
        query = query.where(id_column > decode_cursor(cursor))
    return query.order_by(id_column).limit(limit + 1)


def envelope(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    more = len(rows) > limit
    rows = rows[:limit]
    return {"data": rows, "next_cursor": encode_cursor(rows[-1]["id"]) if more and rows else None}
