"""The deployment spec: everything needed to render one BU's vLLM instance for Kubernetes.

Every field is validated here, before anything is rendered or applied, so a bad spec fails with
one message per field instead of an API server rejecting half of the objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DEFAULT_MODEL_CLAIM = "cove-models"
DEFAULT_GATEWAY_NAMESPACE = "cove"
# The Helm chart's selector labels of the gateway pods, minus the release name, so the policy
# keeps matching whatever the release is called.
DEFAULT_GATEWAY_POD_LABELS: dict[str, str] = {
    "app.kubernetes.io/component": "gateway",
    "app.kubernetes.io/name": "cove",
}
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
DEFAULT_MAX_LORAS = 4
# Every BU namespace is `cove-bu-<slug>`, so this one can never be a BU's.
SHARED_NAMESPACE = "cove-shared"
DEFAULT_MAX_LORA_RANK = 16
DEFAULT_CPU_KVCACHE_GIB = 4

# Keys Cove writes on every object; a user label with one of them would either be overwritten
# or, worse, change which pods a Service or policy reaches.
RESERVED_LABEL_KEYS = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/component",
    }
)
RESERVED_LABEL_PREFIXES = ("cove.dev/", "kubernetes.io/", "k8s.io/", "pod-security.kubernetes.io/")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"
)
_QUANTITY_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
GIB = Decimal(2) ** 30


# ---- scalar checks ---------------------------------------------------------------------------


def _check_label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        raise ValueError(f"label key {key!r}: the prefix must be a DNS subdomain")
    if len(name) > 63 or not re.fullmatch(_LABEL_NAME, name):
        raise ValueError(
            f"label key {key!r}: the name must be 1-63 letters, digits, '-', '_' or '.',"
            " starting and ending with a letter or digit"
        )
    return key


def _check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not re.fullmatch(_LABEL_NAME, value)):
        raise ValueError(
            f"label value {value!r} must be at most 63 letters, digits, '-', '_' or '.',"
            " starting and ending with a letter or digit"
        )
    return value


def parse_quantity(value: str) -> Decimal:
    """The value of a Kubernetes quantity in the plain forms admins write (4, 500m, 32Gi)."""
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 4, 500m, 16Gi, 100G)")
    return Decimal(match["number"]) * _QUANTITY_FACTORS[match["suffix"]]


def _number_to_str(value: Any) -> Any:
    # YAML turns `cpu: 4` into an int; a quantity is a string to Kubernetes.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _check_quantity(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return value


def _check_relative_path(value: str) -> str:
    segments = value.split("/")
    if any(s in {"", ".", ".."} or not _PATH_SEGMENT.match(s) for s in segments):
        raise ValueError(
            f"{value!r} is not a clean relative path: segments of letters, digits, '.', '_',"
            " '+' or '-', separated by single '/', no '.' or '..'"
        )
    return value


def _check_location(value: str) -> str:
    parse_location(value, DEFAULT_MODEL_CLAIM)
    return value


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


Quantity = Annotated[str, BeforeValidator(_number_to_str), AfterValidator(_check_quantity)]
LabelKey = Annotated[str, AfterValidator(_check_label_key)]
LabelValue = Annotated[str, AfterValidator(_check_label_value)]
DnsLabel = Annotated[
    str, _matching(rf"(?={_DNS_LABEL}$).{{1,63}}", "a DNS label (1-63 of a-z, 0-9, '-')")
]


def _check_gpu_resource(value: str) -> str:
    if "/" not in value:
        raise ValueError("an extended resource name such as nvidia.com/gpu (domain/name)")
    return _check_label_key(value)


GpuResource = Annotated[str, AfterValidator(_check_gpu_resource)]
DnsSubdomain = Annotated[
    str, _matching(rf"(?={_DNS_SUBDOMAIN}$).{{1,253}}", "a DNS subdomain (a-z, 0-9, '-', '.')")
]
# `cove-bu-<slug>` must stay a 63-character DNS label.
BuSlug = Annotated[
    str,
    _matching(
        r"[a-z][a-z0-9-]{0,53}[a-z0-9]",
        "a BU slug: 2-55 lowercase letters, digits and '-', starting with a letter",
    ),
]
# Short enough that `<name>-allow-gateway` and the pods' names stay valid DNS labels.
DeploymentName = Annotated[
    str,
    _matching(
        r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?",
        "a deployment name: 1-40 lowercase letters, digits and '-', starting with a letter",
    ),
]
ServedName = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}",
        "a model name: up to 200 letters, digits, '.', '_', ':', '/', '-'",
    ),
]
ClaimName = Annotated[
    str, _matching(rf"(?={_DNS_LABEL}$).{{1,56}}", "a claim name (a DNS label of at most 56)")
]
AdapterName = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}",
        "an adapter name: up to 128 letters, digits, '.', '_', '-'",
    ),
]
Location = Annotated[
    str,
    AfterValidator(_check_location),
    Field(
        description="A path in the model volume, pvc://claim/path, or s3://bucket/key",
        max_length=1024,
    ),
]


# ---- locations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeLocation:
    """Files on a PersistentVolumeClaim in the BU's namespace, mounted read-only."""

    claim: str
    path: str


@dataclass(frozen=True, slots=True)
class S3Location:
    """Objects under an S3-compatible prefix, copied into the pod before vLLM starts."""

    bucket: str
    key: str


ParsedLocation = VolumeLocation | S3Location


def parse_location(value: str, default_claim: str) -> ParsedLocation:
    """`s3://bucket/key`, `pvc://claim/path`, or a relative path inside `default_claim`."""
    if value.startswith("s3://"):
        bucket, _, key = value.removeprefix("s3://").partition("/")
        if not _S3_BUCKET.fullmatch(bucket):
            raise ValueError(f"{value!r}: {bucket!r} is not an S3 bucket name")
        if not key:
            raise ValueError(f"{value!r}: give the key prefix of the model after the bucket")
        return S3Location(bucket, _check_relative_path(key))
    if value.startswith("pvc://"):
        claim, _, path = value.removeprefix("pvc://").partition("/")
        if len(claim) > 56 or not re.fullmatch(_DNS_LABEL, claim):
            raise ValueError(
                f"{value!r}: the claim name must be a DNS label of at most 56 characters"
            )
        if not path:
            raise ValueError(f"{value!r}: give the model's path inside the claim")
        return VolumeLocation(claim, _check_relative_path(path))
    if "://" in value:
        raise ValueError(f"{value!r}: only s3:// and pvc:// locations are supported")
    if value.startswith("/"):
        raise ValueError(
            f"{value!r}: give a path relative to the model volume, or pvc://claim/path"
        )
    return VolumeLocation(default_claim, _check_relative_path(value))


def named_claim(location: str) -> str | None:
    """The claim a `pvc://claim/path` location names; None for a model-store path or S3.

    A base instance shared across BUs loads adapters only from model-store paths: it runs in
    its own namespace, where a BU's claims (such as its training volume) do not exist.
    """
    if not location.startswith("pvc://"):
        return None
    return location.removeprefix("pvc://").partition("/")[0]


# ---- extra vLLM flags --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtraArg:
    """How one allow-listed vLLM flag's value is checked and written."""

    kind: Literal["flag", "int", "float", "choice"]
    low: float | None = None
    high: float | None = None
    choices: tuple[str | int, ...] = ()


# Flags that tune the engine without changing what is served, where, or to whom. Anything that
# could load code (--trust-remote-code), change the listening address, or bypass Cove's own
# flags stays out; see docs/deployments.md.
ALLOWED_EXTRA_ARGS: dict[str, ExtraArg] = {
    "block-size": ExtraArg("choice", choices=(8, 16, 32, 64, 128)),
    "dtype": ExtraArg(
        "choice", choices=("auto", "bfloat16", "float", "float16", "float32", "half")
    ),
    "enable-chunked-prefill": ExtraArg("flag"),
    "enforce-eager": ExtraArg("flag"),
    "gpu-memory-utilization": ExtraArg("float", low=0.05, high=1.0),
    "kv-cache-dtype": ExtraArg(
        "choice", choices=("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
    ),
    "max-cpu-loras": ExtraArg("int", low=1, high=1024),
    "max-num-batched-tokens": ExtraArg("int", low=1, high=4_194_304),
    "max-num-seqs": ExtraArg("int", low=1, high=65_536),
    "quantization": ExtraArg(
        "choice", choices=("awq", "bitsandbytes", "compressed-tensors", "fp8", "gptq")
    ),
    "seed": ExtraArg("int", low=0, high=2**31 - 1),
}
# Flags Cove writes itself, with the spec field that sets them.
COVE_OWNED_ARGS: dict[str, str] = {
    "model": "model.location",
    "served-model-name": "model.name",
    "max-model-len": "vllm.max_model_len",
    "tensor-parallel-size": "vllm.tensor_parallel_size",
    "enable-prefix-caching": "vllm.enable_prefix_caching",
    "enable-lora": "mode: shared",
    "max-loras": "vllm.max_loras",
    "max-lora-rank": "vllm.max_lora_rank",
    "lora-modules": "adapters",
    "speculative-config": "vllm.speculative_decoding",
    "host": "(fixed by Cove)",
    "port": "(fixed by Cove)",
}

ExtraValue = bool | int | float | str


def _check_extra_args(args: dict[str, ExtraValue]) -> dict[str, ExtraValue]:
    problems: list[str] = []
    for flag, value in args.items():
        if flag.startswith("-"):
            problems.append(f"{flag!r}: write the flag without leading dashes")
            continue
        if flag in COVE_OWNED_ARGS:
            problems.append(f"{flag!r} is set by Cove; use {COVE_OWNED_ARGS[flag]}")
            continue
        rule = ALLOWED_EXTRA_ARGS.get(flag)
        if rule is None:
            allowed = ", ".join(sorted(ALLOWED_EXTRA_ARGS))
            problems.append(f"{flag!r} is not an allowed vLLM flag (allowed: {allowed})")
            continue
        problem = _extra_value_problem(rule, value)
        if problem:
            problems.append(f"{flag!r}: {problem}")
    if problems:
        raise ValueError("; ".join(problems))
    return args


def _extra_value_problem(rule: ExtraArg, value: ExtraValue) -> str | None:
    if rule.kind == "flag":
        return None if isinstance(value, bool) else "must be true or false"
    if rule.kind == "choice":
        if value in rule.choices and not isinstance(value, bool):
            return None
        return f"must be one of {', '.join(str(c) for c in rule.choices)}"
    wanted = int if rule.kind == "int" else int | float
    if isinstance(value, bool) or not isinstance(value, wanted):
        return f"must be {'an integer' if rule.kind == 'int' else 'a number'}"
    low, high = rule.low or 0, rule.high or 0
    if not low <= float(value) <= high:
        return f"must be between {low:g} and {high:g}"
    return None


def _check_user_labels(labels: dict[str, str]) -> dict[str, str]:
    reserved = sorted(
        key
        for key in labels
        if key in RESERVED_LABEL_KEYS or key.startswith(RESERVED_LABEL_PREFIXES)
    )
    if reserved:
        raise ValueError(
            f"{', '.join(reserved)}: reserved for Cove's own labels; choose another key"
        )
    return labels


# ---- the spec --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    name: ServedName = Field(description="Model name the OpenAI API serves (--served-model-name)")
    location: Location
    context_length: int = Field(ge=16, le=2_097_152, description="The model's context window")


class SpeculativeDecoding(_Strict):
    model: Location = Field(description="Draft model: same location forms as model.location")
    num_speculative_tokens: int = Field(ge=1, le=16)


class VllmOptions(_Strict):
    max_model_len: int | None = Field(
        default=None, ge=16, le=2_097_152, description="Defaults to model.context_length"
    )
    enable_prefix_caching: bool = True
    speculative_decoding: SpeculativeDecoding | None = None
    tensor_parallel_size: int | None = Field(
        default=None, ge=1, le=8, description="Defaults to gpus_per_replica; must equal it"
    )
    max_loras: int | None = Field(default=None, ge=1, le=64, description="Shared mode only")
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] | None = Field(
        default=None, description="Shared mode only; vLLM accepts exactly these ranks"
    )
    cpu_kvcache_space_gib: int | None = Field(
        default=None, ge=1, le=4096, description="CPU-only instances: KV cache size in GiB"
    )
    extra_args: Annotated[dict[str, ExtraValue], AfterValidator(_check_extra_args)] = Field(
        default_factory=dict, description="Allow-listed vLLM flags, without leading dashes"
    )


class Adapter(_Strict):
    name: AdapterName
    location: Location


class ComputeRequests(_Strict):
    cpu: Quantity = "4"
    memory: Quantity = "32Gi"


class ComputeLimits(_Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = Field(default=None, description="Defaults to the memory request")


class Resources(_Strict):
    requests: ComputeRequests = Field(default_factory=ComputeRequests)
    limits: ComputeLimits = Field(default_factory=ComputeLimits)

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        for resource in ("cpu", "memory"):
            limit = getattr(self.limits, resource)
            request = getattr(self.requests, resource)
            if limit is not None and parse_quantity(limit) < parse_quantity(request):
                raise ValueError(
                    f"limits.{resource} ({limit}) is below requests.{resource} ({request})"
                )
        return self

    @property
    def memory_limit(self) -> str:
        return self.limits.memory or self.requests.memory


class Toleration(_Strict):
    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        if self.operator == "Equal" and self.key is None:
            raise ValueError("operator Equal needs a key")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds applies only to effect NoExecute")
        return self


def parse_tolerations(raw: list[dict[str, Any]]) -> list[Toleration]:
    """Tolerations as Kubernetes writes them (`tolerationSeconds`) or as Cove's API does."""
    return [
        Toleration.model_validate(
            {"toleration_seconds" if k == "tolerationSeconds" else k: v for k, v in item.items()}
        )
        for item in raw
    ]


class ImageRef(_Strict):
    repository: Annotated[
        str,
        _matching(
            r"(?=.{1,255}$)[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+",
            "an image repository such as registry.internal/vllm/vllm-openai",
        ),
    ]
    tag: Annotated[str, _matching(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "an image tag")] | None = (
        None
    )
    digest: (
        Annotated[str, _matching(r"sha256:[a-f0-9]{64}", "a digest (sha256:<64 hex digits>)")]
        | None
    ) = None
    pull_secret: DnsSubdomain | None = Field(
        default=None, description="Secret in the BU namespace for a private registry"
    )

    @model_validator(mode="after")
    def _pinned(self) -> ImageRef:
        if self.tag is not None and self.tag.lower() == "latest":
            raise ValueError(
                "tag 'latest' is refused: it changes under a running deployment; pin a version"
                " tag or a digest"
            )
        if self.tag is None and self.digest is None:
            raise ValueError("give a tag or a digest")
        return self

    @classmethod
    def parse(cls, reference: str, pull_secret: str | None = None) -> ImageRef:
        """`registry/repository[:tag][@digest]`, the way the Helm chart hands it over."""
        rest, _, digest = reference.partition("@")
        name, colon, tag = rest.rpartition(":")
        if not colon or "/" in tag:  # no tag, or the colon was a registry's port
            name, tag = rest, ""
        return cls(repository=name, tag=tag or None, digest=digest or None, pull_secret=pull_secret)

    @property
    def reference(self) -> str:
        ref = self.repository
        if self.tag is not None:
            ref += f":{self.tag}"
        if self.digest is not None:
            ref += f"@{self.digest}"
        return ref


class S3Source(_Strict):
    """How s3:// locations are fetched: by an init container into a node-local emptyDir."""

    credentials_secret: DnsSubdomain = Field(
        description="Secret in the BU namespace with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    )
    downloader_image: ImageRef = Field(description="An image with the AWS CLI v2 (`aws`)")
    endpoint_url: (
        Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")] | None
    ) = None
    cache_size: Quantity = Field(
        default="200Gi", description="Size limit of the emptyDir the model is copied to"
    )


class DeploymentSpec(_Strict):
    """One vLLM instance of a business unit, as the reconciler renders and applies it."""

    bu: BuSlug
    name: DeploymentName
    mode: Literal["dedicated", "shared"] = "dedicated"
    shared_across_bus: bool = Field(
        default=False,
        description="A base instance the platform runs for several BUs' adapters; it lives in"
        f" the namespace {SHARED_NAMESPACE}, whose GPU quota is the platform's",
    )
    model: ModelSource
    replicas: int = Field(default=1, ge=0, le=64)
    gpus_per_replica: int = Field(default=1, ge=0, le=8, description="0 runs on CPUs only")
    gpu_type: LabelValue | None = Field(
        default=None, description=f"Value of the node label {GPU_PRODUCT_LABEL}"
    )
    gpu_quota: int = Field(ge=0, le=10_000, description="The BU's GPU ceiling (ResourceQuota)")
    vllm: VllmOptions = Field(default_factory=VllmOptions)
    adapters: list[Adapter] = Field(default_factory=list, max_length=64)
    resources: Resources = Field(default_factory=Resources)
    shm_size: Quantity = Field(default="8Gi", description="Size of /dev/shm on GPU instances")
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    gpu_resource: GpuResource = Field(
        default="nvidia.com/gpu",
        description="Extended resource name of the cluster's GPUs (requests, quota, taint)",
    )
    image: ImageRef
    model_volume_claim: Annotated[str, Field(pattern=rf"^{_DNS_LABEL}$", max_length=56)] = Field(
        default=DEFAULT_MODEL_CLAIM, description="PVC that plain model paths live on"
    )
    s3: S3Source | None = None
    gateway_namespace: DnsLabel = DEFAULT_GATEWAY_NAMESPACE
    gateway_pod_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=lambda: dict(DEFAULT_GATEWAY_POD_LABELS), min_length=1
    )
    labels: Annotated[dict[LabelKey, LabelValue], AfterValidator(_check_user_labels)] = Field(
        default_factory=dict, description="Added to metadata; never used in selectors"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        problems = [
            *self._gpu_problems(),
            *self._lora_problems(),
            *self._location_problems(),
            *self._memory_problems(),
        ]
        max_len = self.vllm.max_model_len
        if max_len is not None and max_len > self.model.context_length:
            problems.append(
                f"vllm.max_model_len ({max_len}) exceeds model.context_length"
                f" ({self.model.context_length})"
            )
        if GPU_PRODUCT_LABEL in self.node_selector:
            problems.append(f"node_selector: set {GPU_PRODUCT_LABEL} through gpu_type")
        if self.shared_across_bus and self.mode != "shared":
            problems.append("shared_across_bus: a base instance BUs share runs in mode shared")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _gpu_problems(self) -> list[str]:
        problems: list[str] = []
        gpus, tp = self.gpus_per_replica, self.vllm.tensor_parallel_size
        if tp is not None and tp != max(gpus, 1):
            problems.append(
                f"vllm.tensor_parallel_size ({tp}) must equal gpus_per_replica ({gpus}):"
                " one replica shards the model across exactly its own GPUs"
            )
        if gpus == 0 and self.gpu_type is not None:
            problems.append("gpu_type: a CPU-only deployment (gpus_per_replica 0) has no GPU type")
        if gpus > 0 and self.vllm.cpu_kvcache_space_gib is not None:
            problems.append("vllm.cpu_kvcache_space_gib applies only to CPU-only deployments")
        needed = self.replicas * gpus
        if needed > self.gpu_quota:
            problems.append(
                f"replicas x gpus_per_replica = {self.replicas} x {gpus} = {needed} GPUs,"
                f" over the BU's gpu_quota of {self.gpu_quota}"
            )
        return problems

    def _lora_problems(self) -> list[str]:
        problems: list[str] = []
        if self.mode == "dedicated":
            if self.adapters:
                problems.append(
                    "adapters: only a shared (multi-LoRA) deployment serves adapters;"
                    " set mode: shared"
                )
            for option in ("max_loras", "max_lora_rank"):
                if getattr(self.vllm, option) is not None:
                    problems.append(f"vllm.{option} applies only to mode: shared")
            if "max-cpu-loras" in self.vllm.extra_args:
                problems.append("vllm.extra_args.max-cpu-loras applies only to mode: shared")
            return problems
        names = [adapter.name for adapter in self.adapters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"adapters: duplicate names {', '.join(duplicates)}")
        if self.model.name in names:
            problems.append(f"adapters: {self.model.name!r} is already the base model's name")
        cpu_loras = self.vllm.extra_args.get("max-cpu-loras")
        if isinstance(cpu_loras, int) and cpu_loras < self.max_loras:
            problems.append(
                f"vllm.extra_args.max-cpu-loras ({cpu_loras}) must be at least max_loras"
                f" ({self.max_loras})"
            )
        return problems

    def _location_problems(self) -> list[str]:
        problems: list[str] = []
        for index, adapter in enumerate(self.adapters):
            if isinstance(self.resolve(adapter.location), S3Location):
                problems.append(
                    f"adapters.{index}.location: adapters are hot-loaded from a mounted volume;"
                    " stage it on a PVC (a path or pvc://claim/path)"
                )
        if self.s3 is None:
            s3_fields = [
                field for field, location in self._model_locations() if location.startswith("s3://")
            ]
            if s3_fields:
                problems.append(f"s3: required by the s3:// location of {', '.join(s3_fields)}")
        return problems

    def _memory_problems(self) -> list[str]:
        problems: list[str] = []
        memory = parse_quantity(self.resources.memory_limit)
        if self.cpu_only:
            kv_cache = self.cpu_kvcache_space_gib * GIB
            if kv_cache >= memory:
                problems.append(
                    f"vllm.cpu_kvcache_space_gib ({self.cpu_kvcache_space_gib} GiB) must fit in"
                    f" the memory limit ({self.resources.memory_limit}) with room for the model"
                )
        elif parse_quantity(self.shm_size) >= memory:
            problems.append(
                f"shm_size ({self.shm_size}) is memory-backed and must be below the memory limit"
                f" ({self.resources.memory_limit})"
            )
        return problems

    def _model_locations(self) -> list[tuple[str, str]]:
        found = [("model.location", self.model.location)]
        if self.vllm.speculative_decoding is not None:
            found.append(("vllm.speculative_decoding.model", self.vllm.speculative_decoding.model))
        return found

    # ---- derived values the renderer uses ----

    def resolve(self, location: str) -> ParsedLocation:
        return parse_location(location, self.model_volume_claim)

    @property
    def namespace(self) -> str:
        return SHARED_NAMESPACE if self.shared_across_bus else f"cove-bu-{self.bu}"

    @property
    def cpu_only(self) -> bool:
        return self.gpus_per_replica == 0

    @property
    def tensor_parallel_size(self) -> int:
        return max(self.gpus_per_replica, 1)

    @property
    def max_model_len(self) -> int:
        return self.vllm.max_model_len or self.model.context_length

    @property
    def max_loras(self) -> int:
        return self.vllm.max_loras or DEFAULT_MAX_LORAS

    @property
    def max_lora_rank(self) -> int:
        return self.vllm.max_lora_rank or DEFAULT_MAX_LORA_RANK

    @property
    def cpu_kvcache_space_gib(self) -> int:
        return self.vllm.cpu_kvcache_space_gib or DEFAULT_CPU_KVCACHE_GIB


def describe_errors(errors: list[dict[str, Any]]) -> list[str]:
    """One `field: message` line per problem, for people rather than programs."""
    lines: list[str] = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", ""))
        if error.get("type") == "value_error":
            message = str(error.get("ctx", {}).get("error", message))
        for line in message.splitlines():
            lines.append(f"{location}: {line}" if location else line)
    return lines
