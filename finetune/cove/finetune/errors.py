"""Why a fine-tuning job stopped, as errors with stable codes.

Each is a `CoveError`, so the platform API renders it like any other error and a job records
its `code` as the machine-readable reason of a failed or cancelled state.
"""

from __future__ import annotations

from typing import ClassVar

from cove.platform.core.errors import CoveError


class FinetuneError(CoveError):
    """A job cannot go on; the message tells a BU admin what to change."""

    status: ClassVar[int] = 422
    code: ClassVar[str] = "finetune_failed"


class RepositoryUnreachable(FinetuneError):
    code = "repository_unreachable"


class EmptyRepository(FinetuneError):
    code = "empty_repository"


class NoSdkSymbols(FinetuneError):
    code = "no_sdk_symbols"


class NoSdkCallSites(FinetuneError):
    code = "no_sdk_call_sites"


class TooLittleData(FinetuneError):
    code = "too_little_data"


class InvalidBaseModel(FinetuneError):
    code = "invalid_base_model"


class NoFimTokens(InvalidBaseModel):
    code = "no_fim_tokens"


class InvalidDataset(FinetuneError):
    code = "invalid_dataset"


class InvalidHyperparameters(FinetuneError):
    code = "invalid_hyperparameters"


class TrainingDiverged(FinetuneError):
    code = "diverged"


class JobCancelled(FinetuneError):
    status: ClassVar[int] = 409
    code = "cancelled"


class PromotionRejected(FinetuneError):
    """The adapter trained fine but does not beat the base model by the required margin."""

    code = "promotion_gate_failed"
