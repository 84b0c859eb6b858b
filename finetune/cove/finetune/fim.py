"""Fill-in-the-middle prompts in a base model's own format, as token ids.

Training and evaluation build prompts here, so the adapter is evaluated on exactly the layout
it was trained on, and that layout is the one vLLM serves (prefix-suffix-middle, the order every
FIM code model supports: `<prefix>P<suffix>S<middle>` then the middle and end-of-text).
Pure Python on lists of ids: no torch, no tokenizer objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cove.finetune.errors import NoFimTokens


@dataclass(frozen=True, slots=True)
class FimMarkers:
    """The token ids of a model's FIM markers and of its end-of-text token."""

    prefix: int
    suffix: int
    middle: int
    end: int


def prompt_text(prefix: str, suffix: str, tokens: dict[str, str]) -> str:
    """The prompt as text, for servers that tokenise it themselves (vLLM)."""
    return f"{tokens['prefix']}{prefix}{tokens['suffix']}{suffix}{tokens['middle']}"


def markers_for(metadata: dict[str, Any], token_id: Any, end_id: int | None) -> FimMarkers:
    """Resolve the FIM markers named in a model's metadata to ids with `token_id(text)`."""
    tokens = metadata.get("fim_tokens")
    name = metadata.get("name", "the base model")
    if not isinstance(tokens, dict) or not all(
        isinstance(tokens.get(role), str) for role in ("prefix", "suffix", "middle")
    ):
        raise NoFimTokens(
            f"{name} has no fill-in-the-middle tokens; pick a code model trained for FIM "
            "(StarCoder, DeepSeek Coder, Qwen Coder, CodeLlama ...)"
        )
    ids = {}
    for role in ("prefix", "suffix", "middle"):
        value = token_id(tokens[role])
        if not isinstance(value, int) or value < 0:
            raise NoFimTokens(f"{name}'s tokenizer does not know its FIM token {tokens[role]!r}")
        ids[role] = value
    if end_id is None:
        raise NoFimTokens(f"{name}'s tokenizer has no end-of-text token to end a middle with")
    return FimMarkers(prefix=ids["prefix"], suffix=ids["suffix"], middle=ids["middle"], end=end_id)


def fit_context(
    prefix_ids: list[int], suffix_ids: list[int], budget: int
) -> tuple[list[int], list[int]]:
    """The end of the prefix and the start of the suffix that fit in `budget` tokens.

    The code right before the cursor matters most, so the prefix gets two thirds of the budget
    and whatever the suffix leaves unused.
    """
    budget = max(0, budget)
    suffix_take = min(len(suffix_ids), budget // 3)
    prefix_take = min(len(prefix_ids), budget - suffix_take)
    suffix_take = min(len(suffix_ids), budget - prefix_take)
    prefix = prefix_ids[len(prefix_ids) - prefix_take :] if prefix_take else []
    return prefix, suffix_ids[:suffix_take]


def prompt_ids(
    markers: FimMarkers, prefix_ids: list[int], suffix_ids: list[int], budget: int
) -> list[int]:
    """`<prefix>P<suffix>S<middle>` with P and S cut to fit `budget` tokens in all."""
    prefix, suffix = fit_context(prefix_ids, suffix_ids, budget - 3)
    return [markers.prefix, *prefix, markers.suffix, *suffix, markers.middle]


def training_ids(
    markers: FimMarkers,
    prefix_ids: list[int],
    suffix_ids: list[int],
    middle_ids: list[int],
    context_length: int,
) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) of one training example, or None if its middle cannot fit.

    Labels are -100 (ignored) on the prompt: the adapter learns to write middles, not to
    reproduce the surrounding file it is given.
    """
    target = [*middle_ids, markers.end]
    budget = context_length - len(target)
    if budget < 3 + 16:
        return None
    prompt = prompt_ids(markers, prefix_ids, suffix_ids, budget)
    return [*prompt, *target], [-100] * len(prompt) + target
