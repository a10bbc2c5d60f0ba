"""Model servers announce themselves to Jupyter: one `nbml-server-<name>.json` (mode 0600) per running server in
Jupyter's runtime directory, written when it starts and removed when it stops or the interpreter exits. The nbml
server extension (nbml.jupyter) reads them to proxy, list and stop the servers. A file whose process is gone is
ignored (a killed kernel cannot remove its own)."""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .._process import pid_alive

__all__ = ["Registration", "register", "unregister", "registered_servers", "runtime_dir", "pid_alive",
           "http_url"]

PREFIX = "nbml-server-"


@dataclass
class Registration:
    name: str
    port: int
    pid: int
    folder: str
    kind: str | None
    secret: str                  # for the admin routes (stop); never shown to a browser
    started: str                 # ISO 8601, UTC
    host: str = "127.0.0.1"
    token: str | None = None     # the model server's own bearer token, if it has one
    path: Path | None = None     # the registration file

    def to_json(self) -> str:
        record = asdict(self)
        record.pop("path")
        return json.dumps(record)

    @property
    def direct_url(self) -> str:
        return http_url(self.host, self.port) + "/"


def http_url(host: str, port: int) -> str:
    """http://host:port for a listening address (any-address hosts become loopback; IPv6 in brackets)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", None) else ("[::1]" if host == "::" else host)
    return f"http://[{shown}]:{port}" if ":" in shown and not shown.startswith("[") else f"http://{shown}:{port}"


def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir
    return Path(jupyter_runtime_dir())


def safe_name(stem: str) -> str:
    """A name that is one URL path segment and one file name: letters, digits, '.', '_', '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-") or "model"
    return name[:64]


def _read(path: Path) -> Registration | None:
    try:
        record = json.loads(path.read_text())
        return Registration(**{k: v for k, v in record.items() if k in Registration.__dataclass_fields__
                               and k != "path"}, path=path)
    except (OSError, ValueError, TypeError):
        return None      # half-written, removed meanwhile, or not ours


def _claim(directory: Path, base: str) -> Path:
    """Create the registration file of the first free name: base, base-2, base-3, ...; a file left by a dead
    process is taken over."""
    for n in range(1, 1000):
        path = directory / f"{PREFIX}{base if n == 1 else f'{base}-{n}'}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return path
        except FileExistsError:
            held = _read(path)
            if held is not None and pid_alive(held.pid):
                continue
            if held is None and time.time() - _mtime(path) < 5:   # being written by another process right now
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                return path
            except FileExistsError:
                continue
    raise RuntimeError(f"more than 999 nbml servers named {base!r} are registered in {directory}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def register(folder, port: int, *, kind: str | None, secret: str, host: str = "127.0.0.1",
             token: str | None = None, directory: Path | None = None) -> Registration:
    """Write this process's server into the runtime directory under a unique name (the folder's stem, then -2, -3,
    ... while those are held by live servers) and return its Registration."""
    directory = Path(directory) if directory is not None else runtime_dir()
    directory.mkdir(parents=True, exist_ok=True)
    folder = Path(folder)
    path = _claim(directory, safe_name(folder.name))
    reg = Registration(name=path.stem[len(PREFIX):], port=int(port), pid=os.getpid(), folder=str(folder),
                       kind=kind, secret=secret, host=host, token=token, path=path,
                       started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(reg.to_json())
    os.replace(tmp, path)        # readers see the whole record or none
    return reg


def unregister(reg: Registration | None) -> None:
    """Remove the registration file if it is still this server's."""
    if reg is None or reg.path is None:
        return
    held = _read(reg.path)
    if held is not None and (held.pid, held.port, held.secret) == (reg.pid, reg.port, reg.secret):
        try:
            reg.path.unlink()
        except FileNotFoundError:
            pass


def registered_servers(directory: Path | None = None) -> list[Registration]:
    """The registrations in `directory` (Jupyter's runtime directory by default) whose process is alive, by name
    (x before x-2 before x-10)."""
    directory = Path(directory) if directory is not None else runtime_dir()
    found = []
    for path in sorted(directory.glob(f"{PREFIX}*.json")):
        reg = _read(path)
        if reg is not None and reg.pid and pid_alive(int(reg.pid)):
            found.append(reg)
    return sorted(found, key=_name_order)


def _name_order(reg: Registration) -> tuple[str, int]:
    base, _, n = reg.name.rpartition("-")
    return (base, int(n)) if base and n.isdigit() else (reg.name, 1)
