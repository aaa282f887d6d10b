#!/usr/bin/env python
"""The `shuhi` command with the request path's audit log switched off: FOR BENCHMARKS ONLY.

    .venv/bin/python bench/_gateway_without_audit.py --config FILE serve --port N   # same arguments as `shuhi`

This script exists only so that `bench/audit_throughput.py` can measure what the tamper-evident audit
log costs the request path, against a baseline without it. It is not a way to run the gateway: the
product deliberately has no switch to disable auditing (it is a compliance log, and the pipeline
relies on "nothing is forwarded that was not decided and audited"), and a gateway started through
this script forwards requests without any record of them. Never use it outside a benchmark.

What it changes, in this process only and before anything else is imported from the gateway:
`gateway.services.Services._audit` (the awaited decision record, before forwarding) becomes an async
no-op and `Services._audit_later` (the outcome record, after the answer) a plain no-op. `Services.open`
hands these bound methods to the pipeline's ports, so the request path still builds both records
(their keyed body hash included) but never queues, chains or commits them; the audit writer task
starts and stays idle. Admin changes (creating the principal and the key) are still audited, through
their own synchronous path. Then it runs the normal entry point, `gateway.cli:main`, with the same
command-line arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.services import Services


async def _no_audit(self: Services, fields: dict[str, Any]) -> None:
    """Instead of `Services._audit`: the decision record is dropped (benchmark baseline only)."""


def _no_audit_later(self: Services, fields: dict[str, Any]) -> None:
    """Instead of `Services._audit_later`: the outcome record is dropped (benchmark baseline only)."""


Services._audit = _no_audit  # type: ignore[method-assign]
Services._audit_later = _no_audit_later  # type: ignore[method-assign]

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main(prog_name="shuhi"))
