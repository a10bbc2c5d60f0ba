"""Where the user reaches a served model. The server listens on 127.0.0.1 inside the kernel's machine; a browser or
laptop elsewhere reaches it through Jupyter's own address (the nbml server extension proxies
`<base_url>nbml/models/<name>/`) or, in Colab, through Colab's port proxy.

    colab        google.colab.kernel.proxyPort(port) (only the notebook's own browser session can open it)
    jupyterhub   JUPYTERHUB_SERVICE_PREFIX + nbml/models/<name> (Binder too), and the hub's user-redirect form
    jupyter      the kernel's own Jupyter server (JPY_PARENT_PID in its running-server list) + nbml/models/<name>
    local        http://127.0.0.1:<port>, outside Jupyter
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["Address", "locate", "Reachable"]


@dataclass(frozen=True)
class Address:
    url: str                         # what the user opens or curls (no trailing slash)
    direct_url: str                  # http://127.0.0.1:<port>: code in the kernel itself uses this
    where: str                       # colab | jupyterhub | jupyter | local
    redirect_url: str | None = None  # JupyterHub: the same for any user of the hub (/hub/user-redirect/...)
    auth: str | None = None          # the header curl needs for `url`, with the token as a shell variable

    @property
    def proxied(self) -> bool:
        return self.url != self.direct_url


def _proxy_path(name: str) -> str:
    return f"nbml/models/{name}"


def _colab(port: int) -> str | None:
    if "google.colab" not in sys.modules:
        return None
    try:
        from google.colab.output import eval_js
        url = eval_js(f"google.colab.kernel.proxyPort({int(port)})", timeout_sec=10)
    except Exception:     # no front end attached (a scheduled run), or an older Colab: the direct URL
        return None
    return str(url).rstrip("/") if url else None


def _hub(name: str) -> tuple[str, str] | None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix:
        return None
    host = (os.environ.get("JUPYTERHUB_PUBLIC_URL") or os.environ.get("JUPYTERHUB_HOST") or "").rstrip("/")
    if host and not host.startswith(("http://", "https://")):
        host = ""         # a bare host name without a scheme: the path alone, relative to the page, still works
    if host.endswith(prefix.rstrip("/")):          # a public URL that already names this server
        host = host[:-len(prefix.rstrip("/"))]
    hub_base = "/" + os.environ.get("JUPYTERHUB_BASE_URL", "/").strip("/")
    hub_base = hub_base.rstrip("/") + "/"
    url = f"{host}/{prefix.strip('/')}/{_proxy_path(name)}"
    return url, f"{host}{hub_base}hub/user-redirect/{_proxy_path(name)}/"


def jupyter_server_info() -> dict | None:
    """The running Jupyter server this kernel belongs to (its entry in the runtime directory), if any."""
    parent = os.environ.get("JPY_PARENT_PID")
    if not parent and not os.environ.get("JPY_SESSION_NAME"):
        return None
    try:
        from jupyter_server.serverapp import list_running_servers
        servers = list(list_running_servers())
    except Exception:
        return None
    mine = [s for s in servers if parent and str(s.get("pid")) == parent]
    if not mine and os.environ.get("JPY_SESSION_NAME") and len(servers) == 1:
        mine = servers           # a kernel started by a server, and only one server runs here
    return mine[0] if mine else None


def locate(name: str, direct_url: str, port: int) -> Address:
    """The address of the model server `name` listening at `direct_url`, for where this process runs."""
    colab = _colab(port)
    if colab:
        return Address(colab, direct_url, "colab")
    hub = _hub(name)
    if hub:
        return Address(hub[0], direct_url, "jupyterhub", redirect_url=hub[1],
                       auth="Authorization: token $JUPYTERHUB_API_TOKEN")
    info = jupyter_server_info()
    if info and info.get("url"):
        return Address(f"{info['url'].rstrip('/')}/{_proxy_path(name)}", direct_url, "jupyter",
                       auth="Authorization: token $JUPYTER_TOKEN")
    return Address(direct_url, direct_url, "local")


def colab_iframe(port: int, path: str = "/", height: int = 300) -> bool:
    """Show the server in an iframe of the Colab output (Colab's own port proxy); False outside Colab."""
    if "google.colab" not in sys.modules:
        return False
    from google.colab import output
    output.serve_kernel_port_as_iframe(int(port), path=path, height=height)
    return True


class Reachable:
    """The addresses of a running model server, each for where it is used (shared by the one-process ServerHandle
    and the Ray Serve handle): `.url` for requests from code on this machine (http://127.0.0.1:<port>, the same as
    `.direct_url`), `.browser_url` for a browser (through Jupyter's proxy or Colab's where the kernel runs in one),
    `.curl()` for a terminal. A subclass sets `proxy_name`, `direct_url`, `port`, `_address = None`, and says
    `_has_token()` and `_try_it()` (the curl arguments that send one input)."""

    @property
    def address(self) -> Address:
        """Where the user reaches this server (worked out once: in Colab it asks the front end).

        Raises: nothing of its own.

        Examples:
            >>> server.address.url
        """
        if self._address is None:
            self._address = locate(self.proxy_name, self.direct_url, self.port)
        return self._address

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>: for requests from code in this notebook or on this machine (the same as
        `.direct_url`); `.browser_url` is the link to open in a browser.

        Raises: nothing of its own.

        Examples:
            >>> requests.post(server.url + "/predict", files={"file": open("photo.jpg", "rb")})
        """
        return self.direct_url

    @property
    def browser_url(self) -> str:
        """The link to open in your browser: through Jupyter's proxy (JupyterHub, Binder, a Jupyter server; behind
        its login) or Colab's port proxy, where the kernel runs in one; `.url` elsewhere.

        Raises: nothing of its own.

        Examples:
            >>> print(server.browser_url)
        """
        return self.address.url

    def iframe(self, path: str = "/", height: int = 300):
        """The server's page in the output: Colab's port proxy in Colab, else an IFrame of `.browser_url`.

        `path`: the page under the server (its index by default); `height`: the frame's height in pixels.

        Raises: nothing of its own.

        Examples:
            >>> server.iframe("/docs", height=500)
        """
        if colab_iframe(self.port, path, height):
            return None
        from IPython.display import IFrame
        return IFrame(self.browser_url + path, width="100%", height=height)

    def curl(self, browser: bool = False, *, direct: bool | None = None) -> str:
        """A curl line that works pasted into a terminal on this machine: `.url`, with the server's own token as
        `$NBML_TOKEN` when it has one. `browser=True`: the line for `.browser_url` (from another machine, with
        Jupyter's token as a shell variable; the proxy adds the server's own). `direct` is the older name of
        `not browser`.

        Raises: nothing of its own.

        Examples:
            >>> print(server.curl())
            >>> print(server.curl(browser=True))
        """
        a = self.address
        if direct is not None:
            browser = not direct
        if not browser or not a.proxied:
            auth = ' -H "Authorization: Bearer $NBML_TOKEN"' if self._has_token() else ""
            return f"curl{auth} {self._try_it()} {self.direct_url}/predict"
        auth = f' -H "{a.auth}"' if a.auth else ""
        return f"curl{auth} {self._try_it()} {a.url}/predict"
