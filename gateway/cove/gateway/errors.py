"""Gateway-specific errors (rendered in the OpenAI error envelope)."""

from __future__ import annotations

from cove.platform.core.errors import BadRequest, NotFound


class ModelNotFound(NotFound):
    code = "model_not_found"


class MalformedJson(BadRequest):
    code = "malformed_json"


class FimNotSupported(BadRequest):
    code = "fim_not_supported"
