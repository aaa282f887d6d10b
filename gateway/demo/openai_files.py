"""The fake provider's OpenAI files and fine-tuning jobs, kept in memory.

Part of the fake upstream (see :mod:`gateway.demo.upstream`).
"""

from __future__ import annotations

import time
from typing import Any

from gateway.demo.wire import OPENAI, HTTPError, Req, bad_request, missing, new_id, openai_error


class FilesAndJobs:
    """``/v1/files`` and ``/v1/fine_tuning/jobs`` (a part of ``FakeUpstream``)."""

    files: dict[str, dict[str, Any]]
    file_contents: dict[str, bytes]
    jobs: dict[str, dict[str, Any]]

    def _list_files(self, req: Req) -> Any:
        return 200, {"object": "list", "data": list(self.files.values()), "has_more": False}

    def _upload_file(self, req: Req) -> Any:
        body = req.body
        ctype = b""
        for k, v in req.scope["headers"]:
            if k == b"content-type":
                ctype = v
        fields = _parse_multipart(ctype, body)
        if fields is None:
            raise bad_request(OPENAI, "Expected a multipart/form-data body.")
        if "file" not in fields:
            raise missing(OPENAI, "file")
        if "purpose" not in fields:
            raise missing(OPENAI, "purpose")
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode("utf-8", "replace")
        fid = new_id("file-")
        obj = {
            "id": fid,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename or "upload",
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[fid] = obj
        self.file_contents[fid] = content
        return 200, obj

    def _file_item(self, req: Req) -> Any:
        method, rest = req.method, req.item
        fid, obj, sub = _lookup(rest, self.files, "No such File object: {}")
        if method == "GET" and not sub:
            return 200, obj
        if method == "GET" and sub == "content":
            return self.file_contents.get(fid, b"")  # served as bytes (JSON content type, like OpenAI's jsonl)
        if method == "DELETE" and not sub:
            del self.files[fid]
            self.file_contents.pop(fid, None)
            return 200, {"id": fid, "object": "file", "deleted": True}
        raise HTTPError(405, openai_error(f"Invalid method for URL ({method} /v1/files/{rest})", "invalid_request_error"))

    def _list_jobs(self, req: Req) -> Any:
        return 200, {"object": "list", "data": list(self.jobs.values())[::-1], "has_more": False}

    def _create_job(self, req: Req) -> Any:
        fmt, data = req.fmt, req.json()
        model = data.get("model")
        if not model:
            raise missing(fmt, "model")
        training_file = data.get("training_file")
        if not training_file:
            raise missing(fmt, "training_file")
        if training_file not in self.files:
            raise HTTPError(
                400,
                openai_error(f"invalid training_file: {training_file}", "invalid_request_error", "training_file", None),
            )
        validation_file = data.get("validation_file")
        if validation_file and validation_file not in self.files:
            raise HTTPError(
                400,
                openai_error(f"invalid validation_file: {validation_file}", "invalid_request_error", "validation_file", None),
            )
        jid = new_id("ftjob-")
        hyper = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
        job = {
            "object": "fine_tuning.job",
            "id": jid,
            "model": model,
            "created_at": int(time.time()),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-fakeupstream",
            "result_files": [],
            "status": "queued",
            "validation_file": validation_file,
            "training_file": training_file,
            "hyperparameters": hyper,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "trained_tokens": None,
            "error": None,
            "seed": int(data.get("seed") or 42),
            "suffix": data.get("suffix"),
            "metadata": data.get("metadata"),
            "estimated_finish": None,
            "integrations": [],
            "user_provided_suffix": data.get("suffix"),
        }
        self.jobs[jid] = job
        return 200, job

    def _job_item(self, req: Req) -> Any:
        method, rest = req.method, req.item
        jid, job, sub = _lookup(rest, self.jobs, "Could not find fine tune job: {}", "fine_tune_not_found")
        if method == "GET" and not sub:
            return 200, job
        if method == "POST" and sub == "cancel":
            job["status"] = "cancelled"
            return 200, job
        raise HTTPError(405, openai_error(f"Invalid method for URL ({method})", "invalid_request_error"))


def _lookup(rest: str, table: dict[str, dict[str, Any]], message: str,
            code: str | None = None) -> tuple[str, dict[str, Any], str]:
    """(id, object, what follows the id) of ``<id>[/<sub>]``: OpenAI's 404 when the id names nothing."""
    key, _, sub = rest.partition("/")
    found = table.get(key)
    if found is None:
        raise HTTPError(404, openai_error(message.format(key), "invalid_request_error", "id", code))
    return key, found, sub


def _parse_multipart(content_type: bytes, body: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """Minimal multipart/form-data parser: field name -> (filename, content)."""
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    boundary = b""
    for param in content_type.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.lower() == b"boundary":
            boundary = value.strip(b'"')
    if not boundary:
        return None
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary):
        if not part or part.startswith(b"--"):
            continue
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = None
        filename = None
        for line in head.split(b"\r\n"):
            hname, _, hvalue = line.partition(b":")
            if hname.strip().lower() != b"content-disposition":
                continue
            for item in hvalue.split(b";"):
                k, _, v = item.strip().partition(b"=")
                k = k.strip().lower()
                v = v.strip().strip(b'"')
                if k == b"name":
                    name = v.decode("utf-8", "replace")
                elif k == b"filename":
                    filename = v.decode("utf-8", "replace")
        if name is not None:
            fields[name] = (filename, content)
    return fields
