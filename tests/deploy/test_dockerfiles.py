"""The Dockerfiles, checked structurally (no container runtime can build them here)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from .conftest import DOCKER_DIR

IMAGES = {
    # image: (pip extra installed in the builder, default command of the final stage)
    "gateway": (
        "gateway",
        "uvicorn --factory cove.gateway.app:main_app --host 0.0.0.0 --port 8080"
        " --timeout-keep-alive 75",
    ),
    "platform": (
        "api",
        "uvicorn --factory cove.platform.api.app:main_app --host 0.0.0.0 --port 8000"
        " --timeout-keep-alive 75",
    ),
    "worker": ("worker", "celery -A cove.platform.worker worker --loglevel INFO"),
    "trainer": ("train", None),
}

BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|python3-dev)\b"
)
# A base image with an explicit release: at least major.minor[.patch] in the tag, or a digest.
PINNED_BASE = re.compile(
    r"^[a-z0-9./_-]+(:(?P<tag>[0-9]+\.[0-9]+[A-Za-z0-9_.-]*))?(@sha256:[a-f0-9]{64})?$"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def parse(text: str) -> list[Stage]:
    """Instructions grouped by stage; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            flags = [p for p in parts if p.startswith("--")]
            words = [p for p in parts if not p.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert not flags, f"unexpected FROM flags {flags}"
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile by Cove's rules (empty when nothing is)."""
    found: list[str] = []
    stages = parse(text)
    if len(stages) < 2:
        found.append("not multi-stage")
    for stage in stages:
        match = PINNED_BASE.match(stage.base)
        if not match or not (match["tag"] or "@sha256:" in stage.base):
            found.append(f"base image {stage.base} is not pinned to a release")
        if "latest" in stage.base:
            found.append(f"base image {stage.base} uses latest")
    final = stages[-1]
    users = final.args("USER")
    if not users:
        found.append("final stage runs as root (no USER)")
    else:
        user = users[-1]
        if not re.fullmatch(r"[0-9]+(:[0-9]+)?", user):
            found.append(f"USER {user} is not numeric")
        elif int(user.split(":")[0]) == 0:
            found.append("USER is root")
        last_user = max(i for i, (k, _) in enumerate(final.instructions) if k == "USER")
        if any(k == "RUN" for k, _ in final.instructions[last_user:]):
            found.append("commands run after USER switch back")
    for keyword, argument in final.instructions:
        if keyword == "RUN" and BUILD_TOOLS.search(argument):
            found.append(f"build tools in the final stage: {argument}")
        if keyword == "RUN" and re.search(r"\b(apt-get|apt|apk|pip)\s+install\b", argument):
            found.append(f"packages installed in the final stage: {argument}")
    if not any(
        k == "COPY" and a.startswith("--from=") and "/opt/venv" in a for k, a in final.instructions
    ):
        found.append("final stage does not copy the virtual environment from a builder")
    return found


def _dockerfile(image: str) -> str:
    return (DOCKER_DIR / f"{image}.Dockerfile").read_text()


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_follows_the_rules(image: str) -> None:
    assert problems(_dockerfile(image)) == []


@pytest.mark.parametrize("image", IMAGES)
def test_builder_and_runtime_share_one_python(image: str) -> None:
    # The virtual environment's interpreter links must resolve in the final image.
    stages = parse(_dockerfile(image))
    python_bases = {s.base for s in stages if s.base.startswith("python:")}
    assert len(python_bases) == 1, python_bases
    (base,) = python_bases
    assert re.fullmatch(r"python:3\.11\.[0-9]+-slim-bookworm(@sha256:[a-f0-9]{64})?", base)


@pytest.mark.parametrize("image", IMAGES)
def test_builder_installs_the_image_extra_into_a_venv(image: str) -> None:
    extra, _ = IMAGES[image]
    stages = parse(_dockerfile(image))
    builder = next(s for s in stages if s.name == "builder")
    runs = " ".join(builder.args("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert "pip wheel" in runs
    assert f'cove-*.whl)[{extra}]"' in runs
    final = stages[-1]
    assert "--from=builder /opt/venv /opt/venv" in final.args("COPY")


@pytest.mark.parametrize("image", [i for i, (_, command) in IMAGES.items() if command])
def test_default_command_is_the_documented_one(image: str) -> None:
    _, command = IMAGES[image]
    final = parse(_dockerfile(image))[-1]
    (cmd,) = final.args("CMD")
    # Exec form (a JSON array): no shell between the runtime and the process, signals arrive.
    assert " ".join(json.loads(cmd)) == command


def test_trainer_never_ships_torchvision() -> None:
    builder = next(s for s in parse(_dockerfile("trainer")) if s.name == "builder")
    runs = " ".join(builder.args("RUN"))
    assert "uninstall -y torchvision" in runs
    assert 'torch==$TORCH_VERSION"' in runs


def test_platform_image_serves_the_console() -> None:
    stages = parse(_dockerfile("platform"))
    final = stages[-1]
    assert "--from=console /web/dist /opt/cove/console" in final.args("COPY")
    env = " ".join(final.args("ENV"))
    assert "COVE_CONSOLE_DIR=/opt/cove/console" in env


@pytest.mark.parametrize("image", IMAGES)
def test_build_context_leaves_out_local_state(image: str) -> None:
    ignore = (DOCKER_DIR / f"{image}.Dockerfile.dockerignore").read_text().split()
    for entry in (".git", ".venv", ".cove", "web/node_modules"):
        assert entry in ignore, entry


BAD_DOCKERFILE = """
FROM python:latest
RUN apt-get update && apt-get install -y build-essential
USER app
CMD ["python"]
"""


def test_the_rules_catch_a_bad_dockerfile() -> None:
    found = problems(BAD_DOCKERFILE)
    assert "not multi-stage" in found
    assert any("latest" in p for p in found)
    assert "USER app is not numeric" in found
    assert any("build tools" in p for p in found)
    assert any("does not copy the virtual environment" in p for p in found)
    assert "final stage runs as root (no USER)" in problems("FROM a:1.0 AS b\nFROM c:2.0\n")
