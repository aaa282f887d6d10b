"""The `shuhi` command as a user runs it: separate processes, real ports."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SHUHI = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process exited"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("not healthy in time")


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out


def test_serve_with_config_file_and_cli_administration(run_dir: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    config = run_dir / "shuhi.yaml"
    config.write_text(
        f"database_url: sqlite:///{run_dir / 'store.db'}\n"
        "destinations:\n"
        f"  - {{id: local, base_url: '{upstream.openai_base_url}', api_format: openai, models: [gpt-4o-mini]}}\n")
    env = {**os.environ, "SHUHI_CONFIG": str(config)}
    env.pop("SHUHI_ADMIN_TOKEN", None)
    added = subprocess.run(SHUHI + ["principals", "add", "cli-user", "--group", "rd"], env=env, cwd=run_dir,
                           capture_output=True, text=True, check=True)
    assert json.loads(added.stdout)["groups"] == ["rd"]
    issued = subprocess.run(SHUHI + ["principals", "key", "cli-user"], env=env, cwd=run_dir, capture_output=True,
                            text=True, check=True)
    key = json.loads(issued.stdout)["key"]
    port = free_port()
    process = subprocess.Popen(SHUHI + ["serve", "--port", str(port)], env=env, cwd=run_dir, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "from the CLI"}]})
        assert reply.json()["choices"][0]["message"]["content"] == "echo: from the CLI"
    finally:
        output = stop(process)
    # no admin token was configured: one was generated and printed once, and it works
    token = re.search(r"(shuhi-admin-\S+)", output)
    assert token, output
    assert (run_dir / ".shuhi-secret").exists()


def test_bad_config_exits_with_a_clear_message(run_dir: Path) -> None:
    config = run_dir / "bad.yaml"
    config.write_text("max_body_bytes: many\n")
    result = subprocess.run(SHUHI + ["--config", str(config), "serve"], capture_output=True, text=True, cwd=run_dir)
    assert result.returncode != 0
    assert "max_body_bytes" in result.stderr and "Traceback" not in result.stderr


def test_demo_prints_a_curl_line_that_works(run_dir: Path) -> None:
    port = free_port()
    process = subprocess.Popen(SHUHI + ["demo", "--port", str(port), "--data-dir", str(run_dir / "demo")],
                               cwd=run_dir, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any(line.strip().startswith("curl") and "/v1/messages" in line for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        wait_healthy(f"http://127.0.0.1:{port}", process)
        while not any("/approve" in line for line in lines):
            lines.append(process.stdout.readline())
        curls = [line.strip() for line in lines if line.strip().startswith("curl")]
        passing, anthropic_format, leak, approve = curls
        for curl in (passing, anthropic_format):
            result = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=20)
            assert "echo: " in result.stdout, result.stdout
        refusal = json.loads(subprocess.run(shlex.split(leak), capture_output=True, text=True, timeout=20).stdout)
        assert refusal["error"]["code"] == "consent_required"
        request_id = refusal["error"]["consent_request_id"]
        approved = subprocess.run(shlex.split(approve.replace("<consent_request_id>", request_id)),
                                  capture_output=True, text=True, timeout=20)
        assert json.loads(approved.stdout)["purpose"] == "inference"
        marked = json.loads(subprocess.run(shlex.split(leak), capture_output=True, text=True, timeout=20).stdout)
        assert marked["confidentiality"]["article"] == "4(3)"
    finally:
        stop(process)


def test_help_is_bilingual() -> None:
    result = subprocess.run(SHUHI + ["--help"], capture_output=True, text=True, check=True)
    assert "ゲートウェイ" in result.stdout and "gateway" in result.stdout


def test_register_a_folder_then_scan_a_file(run_dir: Path) -> None:
    import datetime as dt

    from gateway.storage import agreements
    from gateway.storage.database import migrate, open_engine

    store = run_dir / "store.db"
    engine = open_engine(f"sqlite:///{store}")
    migrate(engine)
    agreements.create_agreement(engine, {"id": "nda-cli", "title": "t", "counterparty": "c", "purpose": "p",
                                         "effective_date": dt.date(2026, 1, 1), "term_years": 3, "survival_years": 2})
    engine.dispose()
    material = run_dir / "received"
    (material / "src").mkdir(parents=True)
    design = ("The Kestrel ranking model blends click-through priors with a per-tenant calibration layer that is "
              "retrained nightly on the last fourteen days of anonymised search sessions.")
    (material / "design.md").write_text(f"# Kestrel\n\n{design}\n")
    (material / "src" / "rank.py").write_text(
        "def calibrate(scores, tenant_weights, prior):\n"
        "    adjusted = [s * tenant_weights.get(i, 1.0) + prior for i, s in enumerate(scores)]\n"
        "    total = sum(adjusted) or 1.0\n"
        "    return [a / total for a in adjusted]\n")
    (material / "photo.png").write_bytes(b"\x89PNG\r\n")
    env = {**os.environ, "SHUHI_DATABASE_URL": f"sqlite:///{store}"}
    result = subprocess.run(SHUHI + ["register", str(material), "--agreement", "nda-cli", "--category", "ai_technology"],
                            env=env, cwd=run_dir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "registered 2" in result.stdout
    prompt = run_dir / "prompt.txt"
    prompt.write_text(f"Can you improve this? {design[10:120]} Thanks.")
    scanned = subprocess.run(SHUHI + ["scan", str(prompt), "--json"], env=env, cwd=run_dir, capture_output=True,
                             text=True, check=True)
    matches = json.loads(scanned.stdout)["matches"]
    assert matches and matches[0]["agreement_id"] == "nda-cli" and matches[0]["kind"] == "fingerprint"
    clean = subprocess.run(SHUHI + ["scan", "-"], env=env, cwd=run_dir, input="hello world, nothing secret here",
                           capture_output=True, text=True, check=True)
    assert "no match" in clean.stdout


def test_policy_check(run_dir: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    ok = subprocess.run(SHUHI + ["policy", "check", str(root / "policies" / "default.yaml")], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    broken = run_dir / "broken.yaml"
    broken.write_text("version: 1\nactions:\n  default: {third_party: shrug}\n")
    bad = subprocess.run(SHUHI + ["policy", "check", str(broken)], capture_output=True, text=True)
    assert bad.returncode == 1 and "third_party" in bad.stderr


def test_audit_verify_and_export_from_the_cli(run_dir: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    from gateway.app import create_app
    from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, ServerThread, gateway_settings

    url = f"sqlite:///{run_dir / 'audited.db'}"
    server = ServerThread(create_app(gateway_settings(url, upstream), environ=dict(UPSTREAM_KEYS)))
    server.start()
    try:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        httpx.post(server.url + "/admin/v1/principals", json={"id": "p"}, headers=admin)
        key = httpx.post(server.url + "/admin/v1/keys", json={"principal": "p"}, headers=admin).json()["key"]
        for _ in range(3):
            httpx.post(server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
    finally:
        server.stop()
    env = {**os.environ, "SHUHI_DATABASE_URL": url}
    verified = subprocess.run(SHUHI + ["audit", "verify"], env=env, capture_output=True, text=True)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    exported = subprocess.run(SHUHI + ["audit", "export", "--format", "jsonl"], env=env, capture_output=True,
                              text=True, check=True)
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("decision") == 3 and kinds.count("outcome") == 3 and "admin" in kinds
    outcome = next(r for r in records if r["kind"] == "outcome")
    assert outcome["upstream_status"] == 200 and outcome["usage"]["total_tokens"] > 0 and "hello" not in exported.stdout
    decisions = subprocess.run(SHUHI + ["audit", "export", "--format", "csv", "--decision", "allow",
                                         "--kind", "decision"], env=env,
                               capture_output=True, text=True, check=True)
    assert len(decisions.stdout.strip().splitlines()) == 1 + 3
    import sqlite3

    with sqlite3.connect(run_dir / "audited.db") as db:  # an auditor's nightmare: someone edits a decision
        db.execute("UPDATE audit_log SET decision = 'block' WHERE seq = (SELECT min(seq) FROM audit_log "
                   "WHERE kind = 'decision')")
    broken = subprocess.run(SHUHI + ["audit", "verify"], env=env, capture_output=True, text=True)
    assert broken.returncode == 1 and json.loads(broken.stdout)["first_bad"]["reason"] == "edited"
