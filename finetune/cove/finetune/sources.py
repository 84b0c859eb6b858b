"""Where a dataset's code comes from: repositories (local paths or git URLs) and their files.

Git is the one external system here; it sits behind `open_repositories`, which clones each
URL shallowly into a temporary directory that disappears with the context, and turns every
way a clone can fail into a `RepositoryUnreachable` or `EmptyRepository` that names the
repository without its credentials.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal

from cove.finetune.errors import EmptyRepository, RepositoryUnreachable

Role = Literal["sdk", "consumer"]

# Directories whose code someone else wrote or a tool produced: learning from them would teach
# the model other people's conventions and inflate the dataset with copies.
VENDORED_DIRS: Final = frozenset(
    {
        "vendor",
        "vendors",
        "third_party",
        "third-party",
        "thirdparty",
        "external",
        "node_modules",
        "bower_components",
        "jspm_packages",
        "site-packages",
        "dist-packages",
        "venv",
        "Pods",
        "Carthage",
    }
)
BUILD_DIRS: Final = frozenset(
    {"dist", "build", "out", "target", "bin", "obj", "coverage", "__pycache__", "generated"}
)
_TEST_DIRS: Final = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs"})
_SCP_URL: Final = re.compile(r"^[\w.\-]+@[\w.\-]+:")
_URL_USERINFO: Final = re.compile(r"(?<=://)[^/@\s]+@")


@dataclass(frozen=True, slots=True)
class RepoSpec:
    """A repository as a job names it: a local directory or a git URL, and its role."""

    location: str
    role: Role = "consumer"


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository checked out on this machine for the length of a build."""

    name: str
    location: str
    role: Role
    root: Path
    commit: str | None


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file a build considers: `path` is `<repository name>/<path in the repository>`."""

    repo_index: int
    path: str
    absolute: str
    size: int


def is_git_url(location: str) -> bool:
    if "://" in location or _SCP_URL.match(location):
        return True
    return location.endswith(".git") and not Path(location).exists()


def display_location(location: str) -> str:
    """`location` safe to print and store: a URL's user name and password are masked."""
    return _URL_USERINFO.sub("***@", location)


def repository_name(location: str) -> str:
    trimmed = location.rstrip("/\\")
    if trimmed.endswith(".git"):
        trimmed = trimmed[:-4]
    name = re.split(r"[/\\:]", trimmed)[-1]
    return name or "repository"


def _unique_names(specs: Sequence[RepoSpec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        base = repository_name(spec.location)
        name = base
        counter = 2
        while name in names:
            name = f"{base}-{counter}"
            counter += 1
        names.append(name)
    return names


@contextlib.contextmanager
def open_repositories(
    specs: Sequence[RepoSpec], *, clone_timeout: float = 600.0
) -> Iterator[list[Repository]]:
    """Every repository of `specs` as a directory on this machine, in the same order."""
    workdir = Path(tempfile.mkdtemp(prefix="cove-finetune-repos-"))
    try:
        repositories = []
        for spec, name in zip(specs, _unique_names(specs), strict=True):
            if is_git_url(spec.location):
                root = _clone(spec.location, workdir / name, clone_timeout)
            else:
                root = _local(spec.location)
            repositories.append(
                Repository(
                    name=name,
                    location=display_location(spec.location),
                    role=spec.role,
                    root=root,
                    commit=_head_commit(root),
                )
            )
        yield repositories
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _local(location: str) -> Path:
    root = Path(location).expanduser()
    if not root.exists():
        raise RepositoryUnreachable(
            f"repository {location} does not exist", details={"repository": location}
        )
    if not root.is_dir():
        raise RepositoryUnreachable(
            f"repository {location} is a file, not a directory", details={"repository": location}
        )
    return root.resolve()


def _git_env() -> dict[str, str]:
    # A clone must fail rather than wait for a password nobody will type.
    return {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
    }


def _clone(url: str, target: Path, timeout: float) -> Path:
    shown = display_location(url)
    if shutil.which("git") is None:
        raise RepositoryUnreachable(
            f"cannot clone {shown}: git is not installed", details={"repository": shown}
        )
    argv = ["git", "clone", "--depth", "1", "--quiet", "--no-tags", "--", url, str(target)]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_git_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RepositoryUnreachable(
            f"cloning {shown} took longer than {timeout:.0f} s", details={"repository": shown}
        ) from None
    if result.returncode != 0:
        reason = display_location(result.stderr.strip().splitlines()[-1] if result.stderr else "")
        raise RepositoryUnreachable(
            f"cannot clone {shown}: {reason or f'git exited with {result.returncode}'}",
            details={"repository": shown},
        )
    if not any(entry.name != ".git" for entry in target.iterdir()):
        raise EmptyRepository(
            f"repository {shown} is empty (no commits or no files)", details={"repository": shown}
        )
    return target


def _head_commit(root: Path) -> str | None:
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            env=_git_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def walk_files(
    repo_index: int, repository: Repository
) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """The repository's files in a stable order, and (path, reason) of those inside vendored
    or build directories, which are never read."""
    kept: list[SourceFile] = []
    skipped_files: list[tuple[str, str]] = []
    root = repository.root
    for directory, subdirs, files in os.walk(root):
        relative_dir = Path(directory).relative_to(root).as_posix()
        # Sorting in place makes os.walk's order, and so the whole build, reproducible.
        subdirs.sort()
        skipped = [d for d in subdirs if d.startswith(".") or d in VENDORED_DIRS | BUILD_DIRS]
        for name in skipped:
            if not name.startswith("."):
                reason = "vendored" if name in VENDORED_DIRS else "build_output"
                skipped_files.extend(
                    (_prefixed(repository.name, relative_dir, name, path), reason)
                    for path in _all_files(Path(directory) / name)
                )
        subdirs[:] = [d for d in subdirs if d not in skipped]
        for name in sorted(files):
            absolute = os.path.join(directory, name)
            try:
                stat = os.stat(absolute, follow_symlinks=False)
            except OSError:
                continue
            # Symlinks could point outside the repository, or at a file already read.
            if not os.path.isfile(absolute) or os.path.islink(absolute):
                continue
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            kept.append(
                SourceFile(
                    repo_index=repo_index,
                    path=f"{repository.name}/{relative}",
                    absolute=absolute,
                    size=stat.st_size,
                )
            )
    if not kept:
        raise EmptyRepository(
            f"repository {repository.location} has no files"
            + (" outside vendored and build directories" if skipped_files else ""),
            details={"repository": repository.location},
        )
    return kept, skipped_files


def _prefixed(repo: str, relative_dir: str, name: str, inner: str) -> str:
    base = name if relative_dir == "." else f"{relative_dir}/{name}"
    return f"{repo}/{base}/{inner}"


def _all_files(directory: Path) -> list[str]:
    found: list[str] = []
    for current, subdirs, files in os.walk(directory):
        subdirs.sort()
        relative = Path(current).relative_to(directory).as_posix()
        found.extend(name if relative == "." else f"{relative}/{name}" for name in sorted(files))
    return found


def is_test_path(path: str) -> bool:
    """Tests call an SDK but do not define its API."""
    pure = PurePosixPath(path)
    if _TEST_DIRS.intersection(part.lower() for part in pure.parts[:-1]):
        return True
    name = pure.name
    stem = name.split(".", 1)[0]
    return (
        name.startswith("test_")
        or stem.endswith(("_test", "Test", "Tests"))
        or ".test." in name
        or ".spec." in name
        or name == "conftest.py"
    )
