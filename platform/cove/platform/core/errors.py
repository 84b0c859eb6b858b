"""One error hierarchy for every Cove service.

Each error carries its HTTP status and a stable machine-readable `code`. The platform API
renders `{"error": {"code", "message", "details"}}`; the gateway renders the same errors in the
OpenAI error envelope (`{"error": {"message", "type", "param", "code"}}`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class CoveError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # The OpenAI envelope's `type` field.
    kind: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.param = param
        self.headers = headers or {}
        if code is not None:
            self.code_override: str | None = code
        else:
            self.code_override = None

    @property
    def error_code(self) -> str:
        return self.code_override or self.code

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.error_code, "message": self.message}
        if self.param:
            body["param"] = self.param
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def to_openai(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.error_code,
            }
        }


class BadRequest(CoveError):
    status = 400
    code = "bad_request"
    kind = "invalid_request_error"


class ValidationFailed(BadRequest):
    status = 422
    code = "validation_failed"


class Unauthorized(CoveError):
    status = 401
    code = "unauthorized"
    kind = "authentication_error"


class Forbidden(CoveError):
    status = 403
    code = "forbidden"
    kind = "permission_error"


class NotFound(CoveError):
    status = 404
    code = "not_found"
    kind = "invalid_request_error"


class Conflict(CoveError):
    status = 409
    code = "conflict"
    kind = "invalid_request_error"


class PayloadTooLarge(CoveError):
    status = 413
    code = "payload_too_large"
    kind = "invalid_request_error"


class RateLimited(CoveError):
    status = 429
    code = "rate_limited"
    kind = "rate_limit_error"


class UpstreamUnavailable(CoveError):
    status = 503
    code = "upstream_unavailable"
    kind = "server_error"


class UpstreamError(CoveError):
    status = 502
    code = "upstream_error"
    kind = "server_error"


class UpstreamTimeout(CoveError):
    status = 504
    code = "upstream_timeout"
    kind = "server_error"
