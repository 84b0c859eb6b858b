"""A project-local PostgreSQL cluster under the state directory (`.cove/pg`).

`initdb` and `postgres` refuse to run as root, so as root the cluster belongs to the system's
`postgres` user and every server command runs through `runuser`.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from cove.platform.local.procs import StackError, free_port, port_in_use

INSTALL_HINT = "sudo apt-get install -y postgresql"


def find_pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise StackError(
        f"PostgreSQL's '{name}' was not found. Install PostgreSQL ({INSTALL_HINT}) "
        "or set COVE_DATABASE_URL to an existing database."
    )


@dataclass
class LocalPostgres:
    data_dir: Path
    database: str = "cove"

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def superuser(self) -> str:
        return "postgres" if self._as_root else getpass.getuser()

    def _run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]

    @property
    def port_file(self) -> Path:
        return self.data_dir.parent / "pg.port"

    def url(self, port: int) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{port}/{self.database}"

    def ensure_initialised(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = find_pg_bin("initdb")
        partial = self.data_dir.with_name(self.data_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        if self._as_root:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise StackError(
                    "Running as root needs the 'postgres' system user to own the local cluster; "
                    f"install PostgreSQL ({INSTALL_HINT}) or run as a normal user."
                ) from exc
            os.chown(partial, entry.pw_uid, entry.pw_gid)
            if not _traversable_by(partial.parent, entry.pw_uid, entry.pw_gid):
                raise StackError(
                    f"The 'postgres' user cannot reach {partial.parent}; move the checkout "
                    "somewhere it can read, set COVE_HOME to such a directory, or set "
                    "COVE_DATABASE_URL."
                )
        result = self._run(
            [initdb, "-D", str(partial), "--auth=trust", "--encoding=UTF8", "--no-instructions"]
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
        partial.rename(self.data_dir)

    def start(self) -> int:
        """Start the cluster (idempotent) and return its port."""
        pg_ctl = find_pg_bin("pg_ctl")
        port = self._choose_port()
        status = self._run([pg_ctl, "-D", str(self.data_dir), "status"])
        if status.returncode == 0:
            # Already running, e.g. a previous `cove up` that was killed without cleanup.
            return port
        log = self.data_dir.parent / "logs" / "postgres.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        if self._as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(log, entry.pw_uid, entry.pw_gid)
        options = f"-p {port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
        result = self._run(
            [
                pg_ctl,
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if result.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-10:]
            raise StackError(
                "The local PostgreSQL did not start:\n  "
                + "\n  ".join(tail)
                + f"\nIf {self.data_dir} is left from an older PostgreSQL or is damaged, "
                "remove it (`cove down --purge`) and run again."
            )
        self.port_file.write_text(str(port))
        return port

    def _choose_port(self) -> int:
        if self.port_file.exists():
            previous = int(self.port_file.read_text().strip() or 0)
            running = self._run([find_pg_bin("pg_ctl"), "-D", str(self.data_dir), "status"])
            if previous and (running.returncode == 0 or not port_in_use(previous)):
                return previous
        port = free_port()
        self.port_file.write_text(str(port))
        return port

    def ensure_database(self, port: int) -> str:
        admin_url = f"postgresql://{self.superuser}@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        return self.url(port)

    def stop(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            return
        pg_ctl = find_pg_bin("pg_ctl")
        self._run([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid == uid:
            mode_ok = bool(st.st_mode & 0o100)
        elif st.st_gid == gid:
            mode_ok = bool(st.st_mode & 0o010)
        else:
            mode_ok = bool(st.st_mode & 0o001)
        if not mode_ok:
            return False
    return True
