"""Server-sent events as the gateway relays them: whole events cut from a byte stream, and their fields.

Both the marking watcher (Article 4(3)) and the placeholder restorer (reversible PII redaction) rewrite
single events of a provider's stream; they read events the same way, here.
"""

from __future__ import annotations


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete events at the head of `buffer` (each with its blank line), and the incomplete rest."""
    events: list[bytes] = []
    while True:
        cut = buffer.find(b"\n\n")
        if cut < 0:
            return events, buffer
        events.append(buffer[: cut + 2])
        buffer = buffer[cut + 2:]


def event_fields(raw: bytes) -> tuple[str | None, bytes | None]:
    """An event's name (`event:`) and data (`data:`), each None when the event has none."""
    name: str | None = None
    data_line: bytes | None = None
    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode(errors="replace")
        elif line.startswith(b"data:"):
            data_line = line[5:].strip()
    return name, data_line
