#!/usr/bin/env python
"""The `shuhi` command with the request path's audit log switched off: FOR BENCHMARKS ONLY.

    .venv/bin/python bench/_gateway_without_audit.py --config FILE serve --port N   # same arguments as `shuhi`

This script exists only so that `bench/audit_throughput.py` can measure what the tamper-evident audit
log costs the request path, against a baseline without it. It is not a way to run the gateway: the
product deliberately has no switch to disable auditing (it is a compliance log, and the pipeline
relies on "nothing is forwarded that was not decided and audited"), and a gateway started through
this script forwards requests without any record of them. Never use it outside a benchmark.

What it changes, in this process only and before anything else is imported from the gateway:
`AuditLog.append` (the awaited decision record, before forwarding) becomes an async no-op and
`AuditLog.append_nowait` (the outcome record, after the answer) a plain no-op. Everything around them
stays as it is on the audited side: the pipeline builds both records (their keyed body hash
included), `Services._audit` counts the decision in the metrics; only validating, chaining and
committing the records is left out, which is what this benchmark prices. Admin changes are not
recorded either (the benchmark checks only decision and outcome records). Then it runs the normal
entry point, `gateway.cli:main`, with the same command-line arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.storage.audit_writer import AuditLog


async def _no_append(self: AuditLog, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Instead of `AuditLog.append`: the decision record is dropped (benchmark baseline only)."""
    return dict(fields)


def _no_append_nowait(self: AuditLog, fields: Mapping[str, Any]) -> None:
    """Instead of `AuditLog.append_nowait`: the outcome record is dropped (benchmark baseline only)."""


AuditLog.append = _no_append  # type: ignore[method-assign]
AuditLog.append_nowait = _no_append_nowait  # type: ignore[method-assign]

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main(prog_name="shuhi"))
