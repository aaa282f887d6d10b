"""The errors a client of the gateway can see.

    GatewayError                   status, type, code; rendered in the client's provider shape
    ├── InvalidRequest             400 malformed JSON, wrong types, wrong endpoint for a model
    ├── AuthenticationFailed       401 missing or unknown gateway key / admin token
    ├── Forbidden                  403 an admin role may not do this
    ├── ConfidentialityViolation   403 the request would disclose registered material (codes of API.md)
    ├── NotFound                   404 unknown path, object or model (`model_not_found`)
    ├── Conflict                   409 an object with this id exists
    ├── PayloadTooLarge            413 body over the configured limit
    ├── UnprocessableEntity        422 well-formed but not acceptable (e.g. a late written notice)
    ├── RateLimited                429 a request rate or token quota is spent (Retry-After)
    ├── UpstreamError              502 the destination failed, answered garbage or dropped the connection
    ├── UpstreamTimeout            504 the destination did not answer in time
    └── ServiceUnavailable         503 a destination's key is missing, the store is down

Messages speak Japanese and English and never quote prompt text or registered
material: they are shown to employees and may end up in logs.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class: each subclass names its HTTP status and error type."""

    status: int = 500
    type: str = "api_error"
    anthropic_type: str = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.extra = extra or {}

    def openai_body(self) -> dict[str, Any]:
        """OpenAI's error envelope, which its SDK turns into the matching exception class."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code, **self.extra}}

    def anthropic_body(self) -> dict[str, Any]:
        """Anthropic's error envelope, which its SDK turns into the matching exception class."""
        error: dict[str, Any] = {"type": self.anthropic_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        error.update(self.extra)
        return {"type": "error", "error": error}


class InvalidRequest(GatewayError):
    status, type, anthropic_type, code = 400, "invalid_request_error", "invalid_request_error", "invalid_request"


class AuthenticationFailed(GatewayError):
    status, type, anthropic_type, code = 401, "invalid_request_error", "authentication_error", "invalid_api_key"


class Forbidden(GatewayError):
    status, type, anthropic_type, code = 403, "permission_error", "permission_error", "forbidden"


class NotFound(GatewayError):
    status, type, anthropic_type, code = 404, "invalid_request_error", "not_found_error", "not_found"


class Conflict(GatewayError):
    status, type, anthropic_type, code = 409, "invalid_request_error", "invalid_request_error", "conflict"


class PayloadTooLarge(GatewayError):
    status, type, anthropic_type, code = 413, "invalid_request_error", "request_too_large", "request_too_large"


class UnprocessableEntity(GatewayError):
    status, type, anthropic_type, code = 422, "invalid_request_error", "invalid_request_error", "unprocessable"


class RateLimited(GatewayError):
    """429: a principal's or group's request rate or token quota is spent; `extra` carries `retry_after`."""

    status, type, anthropic_type, code = 429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status, type, anthropic_type, code = 502, "upstream_error", "api_error", "upstream_error"


class UpstreamTimeout(GatewayError):
    status, type, anthropic_type, code = 504, "upstream_error", "api_error", "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status, type, anthropic_type, code = 503, "service_unavailable", "overloaded_error", "service_unavailable"


class ConfidentialityViolation(GatewayError):
    """403: the request would disclose material registered under an agreement (API.md's refusal body).

    `extra` carries articles, matches (ids and spans, never text) and the consent request id.
    """

    status, type, anthropic_type, code = 403, "confidentiality_violation", "confidentiality_violation", "blocked"
