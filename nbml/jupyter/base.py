"""What the nbml handlers share: Jupyter's authentication (403 JSON without it), JSON errors, the registrations."""
from __future__ import annotations

import json
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..serving import registry

__all__ = ["NbmlHandler", "find_server", "live_servers"]


class NbmlHandler(APIHandler):
    """Errors are `{"error": ..., "message": ...}` (the model server's key and Jupyter's), with their status."""

    def check_xsrf_cookie(self) -> None:
        if getattr(self, "_jupyter_current_user", "unset") is None:     # not logged in: say that, not "no _xsrf"
            raise web.HTTPError(403)
        return super().check_xsrf_cookie()

    def write_json_error(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "message": message}))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code == 403:
            message = "log in to Jupyter (or send its token: 'Authorization: token <token>')"
        else:
            message = self._reason
        self.clear_header("Content-Encoding")
        self.clear_header("Content-Length")
        self.write_json_error(status_code, message)


def live_servers(settings) -> list[registry.Registration]:
    return registry.registered_servers(Path(settings["nbml_runtime_dir"]))


def find_server(settings, name: str) -> registry.Registration | None:
    return next((r for r in live_servers(settings) if r.name == name), None)
