"""Cross-request accumulation: an item leaked a paragraph at a time still adds up.

Each request alone may hold too little of an item to pass the policy's
coverage threshold; the same principal sending the rest over the next
minutes should not. `PrincipalWindow` remembers, per principal, which
fingerprints of which items it sent recently (the hashes only, never text)
and reports the coverage accumulated over the window. The clock is injected so
tests and a shared-store implementation can drive it; the pipeline decides
what threshold applies.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PrincipalWindow"]

UInt64Array = npt.NDArray[np.uint64]


@dataclass(slots=True)
class _Seen:
    at: float
    item_id: str
    values: UInt64Array


class PrincipalWindow:
    """Per-principal memory of recent fingerprint hits, in process memory.

    ``item_sizes`` returns how many fingerprints an item has (the registry's
    index knows), so accumulated hits become an item coverage.
    """

    def __init__(self, window_seconds: float, item_sizes: Callable[[str], int], *,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 1024) -> None:
        self.window_seconds = window_seconds
        self._item_sizes = item_sizes
        self._clock = clock
        self._max_entries = max_entries
        self._seen: dict[str, deque[_Seen]] = {}

    def _expire(self, principal_id: str, now: float) -> deque[_Seen]:
        seen = self._seen.setdefault(principal_id, deque())
        while seen and (now - seen[0].at > self.window_seconds or len(seen) > self._max_entries):
            seen.popleft()
        return seen

    def observe(self, principal_id: str, item_hits: Mapping[str, UInt64Array]) -> dict[str, float]:
        """Record this request's hits (``ScanResult.item_hits``); return accumulated item coverage.

        The result covers every item the principal touched within the window,
        this request included.
        """
        now = self._clock()
        seen = self._expire(principal_id, now)
        for item_id, values in item_hits.items():
            seen.append(_Seen(now, item_id, np.asarray(values, np.uint64)))
        return self.coverage(principal_id)

    def coverage(self, principal_id: str) -> dict[str, float]:
        """Accumulated item coverage of a principal within the window, without recording anything."""
        seen = self._expire(principal_id, self._clock())
        per_item: dict[str, list[UInt64Array]] = {}
        for entry in seen:
            per_item.setdefault(entry.item_id, []).append(entry.values)
        result = {}
        for item_id, arrays in per_item.items():
            size = self._item_sizes(item_id)
            if size:
                result[item_id] = min(1.0, np.unique(np.concatenate(arrays)).shape[0] / size)
        if not seen:
            self._seen.pop(principal_id, None)
        return result
