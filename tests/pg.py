"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, pg_ctl start on a free port of
127.0.0.1, password authentication over TCP, removed afterwards. Run as the `postgres` system user when the tests
run as root (initdb refuses root), as CI does."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

USER, PASSWORD = "nbml", "s3cret-Pw-7f2c"   # the tests check this password shows up nowhere


def binaries() -> str | None:
    """The folder holding initdb and pg_ctl (Debian's newest /usr/lib/postgresql/N/bin, else PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`durable=False` (the tests) turns fsync off: a killed client loses nothing either way, as the server
    acknowledges a commit only once it holds it; a benchmark asks for `durable=True`, the server's default."""

    def __init__(self, bindir: str, durable: bool = False):
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="nbml-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD)
        if self.as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                  "-E", "UTF8", "--no-sync")
        os.remove(pwfile)
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   f"-c max_connections=60 -c shared_buffers=32MB" + ("" if durable else " -c fsync=off -c full_page_writes=off"))
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w", "start")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL (with the password)."""
        from sqlalchemy import create_engine, text
        name = "t_" + uuid.uuid4().hex[:12]
        engine = create_engine(self.url().replace("postgresql://", "postgresql+psycopg://"),
                               isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
