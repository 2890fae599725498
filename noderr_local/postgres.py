"""A throwaway PostgreSQL cluster from the installed server binaries (initdb + pg_ctl).

Used by the test suite (one cluster per session, a fresh database per test) and by the
benchmarks. Listens on loopback on a free port, runs as the unprivileged `postgres` user when
started as root, and is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text

from noderr_local.process import free_port, wait_for

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin")]


def pg_bin(name: str) -> str:
    for base in PG_BIN_CANDIDATES:
        if (base / name).exists():
            return str(base / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL binary {name!r} not found: run `make setup` (installs it)")
    return found


class PostgresCluster:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.port = free_port()
        self.pid: int | None = None

    def start(self) -> None:
        self.sock.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        subprocess.run(
            [pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, env=env, cwd=self.root, **self._as_postgres_user(),
        )
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sock}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
                "shared_buffers = 128MB\n"
            )
        subprocess.run(
            [pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start"],
            check=True, capture_output=True, env=env, cwd=self.root, **self._as_postgres_user(),
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        wait_for(self._ready, 30, "PostgreSQL")

    def _as_postgres_user(self) -> dict:
        # initdb refuses to run as root: drop to the 'postgres' (or 'nobody') user when root.
        if os.geteuid() != 0:
            return {}
        import pwd

        for name in ("postgres", "nobody"):
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            for p in self.root.rglob("*"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            return {"user": pw.pw_uid, "group": pw.pw_gid}
        raise RuntimeError("running as root with no 'postgres' or 'nobody' user for initdb")

    def _ready(self) -> bool:
        eng = create_engine(self.url("postgres"))
        try:
            with eng.connect() as c:
                c.execute(text("select 1"))
            return True
        finally:
            eng.dispose()

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{db}"

    def admin_execute(self, sql: str) -> None:
        eng = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as c:
                c.execute(text(sql))
        finally:
            eng.dispose()

    def stop(self) -> None:
        if self.pid is None:
            return
        subprocess.run(
            [pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True, **self._as_postgres_user(),
        )
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return
        os.kill(self.pid, 9)
