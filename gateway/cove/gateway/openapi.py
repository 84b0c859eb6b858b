"""Request-body schemas for the OpenAPI document.

The hot path parses bodies with orjson and explicit checks instead of pydantic models; these
schemas document the same contract for clients and for the schema fuzzer.
"""

from __future__ import annotations

from typing import Any


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_SEGMENTS = {
    "type": "object",
    "required": ["prefix"],
    "properties": {
        "prefix": {"type": "string"},
        "suffix": {"type": "string"},
        "filepath": {"type": "string"},
        "git_url": {"type": "string"},
    },
}

COMPLETIONS = _body(
    {
        "oneOf": [
            {
                "title": "OpenAI completion",
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "model": {"type": "string"},
                    "prompt": {"type": "string"},
                    "suffix": {"type": "string"},
                    "max_tokens": {"type": "integer", "minimum": 1},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "stream": {"type": "boolean"},
                    "stop": {"oneOf": [{"type": "string"}, {"type": "array"}]},
                    "n": {"type": "integer", "minimum": 1, "maximum": 8},
                },
            },
            {
                "title": "Tabby completion",
                "type": "object",
                "required": ["segments"],
                "properties": {
                    "language": {"type": "string"},
                    "segments": _SEGMENTS,
                    "temperature": {"type": "number"},
                    "seed": {"type": "integer"},
                },
            },
        ]
    }
)

CHAT = _body(
    {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                },
            },
            "max_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean"},
        },
    }
)

EVENTS = _body(
    {
        "oneOf": [
            {
                "title": "Cove event batch",
                "type": "object",
                "required": ["events"],
                "properties": {
                    "events": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "type", "timestamp"],
                            "properties": {
                                "id": {"type": "string", "format": "uuid"},
                                "type": {"type": "string"},
                                "timestamp": {"type": "string", "format": "date-time"},
                                "completion_id": {"type": "string"},
                            },
                        },
                    }
                },
            },
            {
                "title": "Tabby event",
                "type": "object",
                "required": ["type", "completion_id", "choice_index"],
                "properties": {
                    "type": {"enum": ["view", "select", "dismiss"]},
                    "completion_id": {"type": "string"},
                    "choice_index": {"type": "integer", "minimum": 0},
                    "view_id": {"type": "string"},
                    "elapsed": {"type": "integer"},
                },
            },
        ]
    }
)
