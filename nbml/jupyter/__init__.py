"""The Jupyter server extension: model servers started in kernels reached through Jupyter's own address
(`<base_url>nbml/models/<name>/`, behind Jupyter's authentication), and a read-only REST API for the side panel
(`<base_url>nbml/api/projects`, `.../servers`). Enabled by `etc/jupyter/jupyter_server_config.d/nbml.json`,
which the wheel installs.

    base.py      authentication, JSON errors, the registrations (nbml.serving.registry)
    proxy.py     the proxy route
    handlers.py  the REST routes and their registration with the server
    projects.py  the projects under the root directory, read-only
"""
from __future__ import annotations

__all__ = ["load_jupyter_server_extension"]


def _jupyter_server_extension_points():
    return [{"module": "nbml.jupyter"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from .handlers import setup_handlers
    setup_handlers(serverapp)


load_jupyter_server_extension = _load_jupyter_server_extension
