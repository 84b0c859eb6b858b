"""Gateway-specific errors (rendered in the OpenAI error envelope)."""

from __future__ import annotations

from cove.platform.core.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge


class ModelNotFound(NotFound):
    code = "model_not_found"


class MalformedJson(BadRequest):
    code = "malformed_json"


class FimNotSupported(BadRequest):
    code = "fim_not_supported"


class ContentExcluded(Forbidden):
    code = "content_excluded"


class SecretBlocked(Forbidden):
    code = "secret_blocked"


class PromptTooLarge(PayloadTooLarge):
    code = "prompt_too_large"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"
