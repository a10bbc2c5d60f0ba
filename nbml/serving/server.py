"""`nbml.serve(folder)` / `model.serve()`: an exported model behind an HTTP server, in a background thread (a
notebook cell returns at once) or in the foreground (`nbml serve DIR` from a shell)."""
from __future__ import annotations

import atexit
import contextlib
import errno
import html
import secrets
import signal
import socket
import threading
import time
import warnings
from pathlib import Path

from . import registry
from .address import Address, Reachable
from .app import Service, Settings, build_app
from .service import open_service, read_artifact as _read_artifact  # noqa: F401  (_read_artifact: old imports)

__all__ = ["serve", "ServerHandle", "open_service", "run_foreground"]

DEFAULT_PORT = 8000


def _bind(host: str, port: int | None) -> socket.socket:
    """A listening socket; `port=None` takes 8000 if free and any free port otherwise, `port=0` any free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in ([DEFAULT_PORT, 0] if port is None else [port]):
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)   # asyncio sets TCP_NODELAY only then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as e:
            sock.close()
            if port is None and e.errno == errno.EADDRINUSE:
                continue
            if e.errno == errno.EADDRINUSE:
                raise OSError(e.errno, f"port {port} on {host} is already in use (another server, or one started "
                                       f"earlier and not stopped): pick another port, or port=0 for any free one"
                              ) from None
            raise OSError(e.errno, f"cannot listen on {host}:{candidate}: {e.strerror}") from None
        sock.listen(2048)
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable")


def _uvicorn_server(service: Service, timeout_graceful_shutdown: float = 5.0):
    import uvicorn
    config = uvicorn.Config(build_app(service), lifespan="on", ws="none", log_level="warning", log_config=None,
                            access_log=False,
                            timeout_graceful_shutdown=timeout_graceful_shutdown, timeout_keep_alive=30,
                            server_header=False, proxy_headers=False)   # nothing reads the client address
    return uvicorn.Server(config)


_url = registry.http_url


def _register(service: Service, host: str, port: int) -> registry.Registration | None:
    """Announce the server to Jupyter (nbml.serving.registry); serving goes on without it if that fails."""
    try:
        return registry.register(service.folder, port, kind=service.kind, secret=service.admin_secret, host=host,
                                 token=service.settings.token)
    except (OSError, ImportError, RuntimeError) as e:
        warnings.warn(f"the server runs but Jupyter cannot proxy it: its registration could not be written ({e})",
                      stacklevel=3)
        return None


class ServerHandle(Reachable):
    """A server running in a background thread: `.url`, `.browser_url`, `.curl()`, `.stop()`, `.requests`; shows
    itself in a notebook.

    Three addresses, each for where it is used:
    - `.url` (the same as `.direct_url`): http://127.0.0.1:<port>, for requests from code in this notebook or on
      this machine (`requests.post(server.url + "/predict", ...)`);
    - `.browser_url`: the link to open in your browser, through Jupyter's proxy on JupyterHub, Binder or a Jupyter
      server (behind Jupyter's login) or Colab's port proxy (see nbml.serving.address); `.url` elsewhere;
    - `.curl()`: a curl line for a terminal on this machine (`.curl(browser=True)`: for `.browser_url`, with
      Jupyter's token as a shell variable, from another machine).

    `nbml.serve` and `model.serve()` make it (`service`: the loaded model and its settings; `host` and `sock`: the
    address and the bound socket it listens on); it is not made by hand.

    Raises:
        RuntimeError: the server did not start within 60 s (the reason is in the message).

    Examples:
        >>> server = nbml.serve("export/pets")
        >>> server.url, server.requests
    """

    def __init__(self, service: Service, host: str, sock: socket.socket):
        self.service, self.host = service, host
        self.port = sock.getsockname()[1]
        self.direct_url = _url(host, self.port)
        self._address: Address | None = None
        self.name = service.name         # the model's name (/v2/models/<name>)
        # the name in Jupyter's proxy, <base_url>nbml/models/<proxy_name>/: the folder's, unique among live servers
        self.proxy_name = registry.safe_name(service.folder.name)
        self.registration: registry.Registration | None = None
        self._sock = sock
        service.admin_secret = secrets.token_urlsafe(32)
        service.on_stop = lambda: threading.Thread(target=self.stop, name="nbml-serve-stop", daemon=True).start()
        self._server = _uvicorn_server(service)
        self._error: BaseException | None = None
        self._views: list = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nbml-serve-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the nbml server did not start: {self._error or 'timed out after 60 s'}")
        self.registration = _register(service, host, self.port)
        if self.registration is not None:
            self.proxy_name = self.registration.name
        atexit.register(self.stop)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as e:   # SystemExit from a failed startup included: report it, do not kill the kernel
            self._error = e

    @property
    def log(self):
        """The prediction log this server writes (nbml.predlog), or None when logging is off.

        Raises: nothing of its own.

        Examples:
            >>> server.log
        """
        return self.service.log

    @property
    def folder(self) -> Path:
        """The exported artifact folder being served.

        Raises: nothing of its own.

        Examples:
            >>> server.folder
        """
        return self.service.folder

    @property
    def requests(self) -> int:
        """Requests answered so far (all endpoints, errors included).

        Raises: nothing of its own.

        Examples:
            >>> server.requests
        """
        return self.service.metrics.request_count

    @property
    def predictions(self) -> int:
        """Predictions made so far (an image, text or row each; a batch request counts each).

        Raises: nothing of its own.

        Examples:
            >>> server.predictions
        """
        return self.service.metrics.prediction_count

    @property
    def running(self) -> bool:
        """Whether the server still answers: False after `stop()`, after Stop in the side panel, or when it failed.

        Raises: nothing of its own.

        Examples:
            >>> server.running
        """
        return self._thread.is_alive() and not self._stopped.is_set()

    def stop(self, timeout: float = 30) -> None:
        """Stop accepting requests, finish those in flight, write the prediction log, free the port.

        `timeout`: seconds to wait for requests in flight before the server is made to exit.

        Raises: nothing of its own.

        Examples:
            >>> server.stop()
            >>> server.stop(timeout=5)
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        registry.unregister(self.registration)
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        try:
            self._sock.close()
        except OSError:
            pass
        self.service._log_pending()       # answered requests whose log rows were still waiting (Service._account)
        if self.service.log is not None:
            self.service.log.close()      # a no-op when the server's shutdown already closed it
        atexit.unregister(self.stop)
        self._refresh_views()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _has_token(self) -> bool:
        return bool(self.service.settings.token)

    def _try_it(self) -> str:
        return self.service.inputs.try_it

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        also = f"; open {self.browser_url}/ in a browser" if self.address.proxied else ""
        return (f"ServerHandle({self.name} at {self.url}{also}, {state}, {self.requests} requests)\n"
                f"  try: {self.curl()}")

    # -- notebook display: the link, the URL for code, a curl line to copy, a request count that updates itself -----
    def _html(self) -> str:
        state = "running" if self.running else "stopped"
        colour = "#1a7f37" if self.running else "#888"
        a = self.address
        link = html.escape(a.url)
        share = (f' &middot; <a href="{html.escape(a.redirect_url)}" target="_blank">link to share</a>'
                 if a.redirect_url else "")
        return (f'<div style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.6">'
                f'<b>nbml server</b> <span style="color:{colour}">&#9679; {state}</span> &middot; model '
                f'<code>{html.escape(self.name)}</code> &middot; open <a href="{link}/" target="_blank">{link}</a>'
                f'{share} &middot; <b>{self.requests}</b> requests, {self.predictions} predictions &middot; '
                f'{html.escape(self.service.metrics.runner)}<br>'
                f'from code in this notebook: <code>{html.escape(self.url)}</code> (<code>server.url</code>); '
                f'in a terminal on this machine:'
                f'<pre style="user-select:all;margin:4px 0;padding:4px 8px;background:rgba(128,128,128,.12)">'
                f'{html.escape(self.curl())}</pre>'
                f'<small>Click the line once to select it. Stop with <code>.stop()</code>; charts with '
                f'<code>nbml.monitor(handle)</code>.</small></div>')

    def _repr_html_(self) -> str:
        return self._html()

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display
        try:
            import ipywidgets
        except ImportError:
            display(HTML(self._html()))
            return
        view = ipywidgets.HTML(self._html())
        self._views.append(view)
        display(view)
        if len(self._views) == 1:
            threading.Thread(target=self._tick, name="nbml-serve-view", daemon=True).start()

    def _tick(self) -> None:
        shown = None
        while not self._stopped.wait(1.0):
            now = (self.requests, self.predictions)
            if now != shown:
                shown = now
                self._refresh_views()

    def _refresh_views(self) -> None:
        if not self._views:
            return
        text = self._html()
        for view in self._views:
            try:
                view.value = text
            except Exception:
                pass


def serve(folder, *, host: str = "127.0.0.1", port: int | None = None, dataset=None, token: str | None = None,
          device: str = "auto", max_batch: int = 32, max_wait_ms: float = 5.0, max_body_bytes: int = 16 * 2**20,
          max_pixels: int | None = None, threads: int | None = None, log=True, log_images: int = 0,
          log_image_bytes: int = 2_000_000, log_images_below: float = 1.01, max_text_chars: int = 100_000,
          log_texts: int = 10_000, log_text_chars: int = 2_000, engine: str = "process", replicas: int | None = None,
          autoscale: tuple[int, int] | None = None, ray_address: str | None = None, **ray_options):
    """Serve an exported model (a folder written by `model.export`) in the background; returns a handle at once.

    - `host`: 127.0.0.1 (this machine only) unless told otherwise; `port`: 8000 if free, else any free port
      (`port=0`: any free port; a given port must be free).
    - `token`: when set, every request but the health checks needs `Authorization: Bearer <token>`.
    - `device`: "auto" (torch on a GPU if there is one, else ONNX Runtime on the CPU), "cpu", "cuda", ...
    - `max_batch`, `max_wait_ms`: dynamic batching of concurrent requests.
    - `max_body_bytes` (413 above it), `max_pixels` (decompression-bomb limit; the project's when `dataset` is given).
    - `threads`: ONNX Runtime's threads per call (default: the cores this process may use).
    - `log`: each prediction goes to `dataset`'s store if given, else to `<folder>/predictions.sqlite` (or a path
      given here; `log=False` for none). `log_images=N` also keeps up to N input images (each at most
      `log_image_bytes`, only below confidence `log_images_below`) for `ds.add_from_log`. Rows reach the disk at
      most a second after the answer, and all of them when the server stops (see nbml.predlog).
    - Text models take `{"text": ...}` or `{"texts": [...]}` on /predict and a BYTES input `text` on the Open
      Inference Protocol; a text over `max_text_chars` characters is refused (400). The log keeps the first
      `log_text_chars` characters of each text, for `log_texts` texts in all (below `log_images_below`), so
      `ds.add_from_log` can bring them back.
    - `engine="ray"`: the same app on Ray Serve (nbml.serving.ray_engine): `replicas` (default 2) or
      `autoscale=(min, max)` (min 0: none while idle), on a local Ray or the cluster at `ray_address`; each
      answered request is logged before its answer is sent. Returns a RayServerHandle (`.scale(n)`, `.replicas`).
      `**ray_options` go to nbml.serving.ray_engine.serve_ray (`num_cpus` per replica, `idle_s`, `ingress` ("haproxy"
      in front of the replicas, the default on the local Ray nbml starts where Ray has it, or "proxy"), ...).

    Raises:
        ValueError: `engine` is not 'process' or 'ray', Ray options are given without engine='ray', or `folder` is a
            pickle, a saved model not yet exported, or not an nbml model, or `autoscale` is not (min, max) with
            0 <= min <= max and max >= 1.
        FileNotFoundError: `folder` holds no config.json.
        OSError: the port asked for is in use, or the address cannot be listened on.
        RuntimeError: the server did not start (with engine='ray': Ray could not start, the replicas do not fit, or the
            model is served there already).
        ImportError: engine='ray' and Ray Serve is not installed.

    Examples:
        >>> server = nbml.serve("export/pets", dataset=ds, log_images=200)
        >>> server = nbml.serve("export/pets", engine="ray", replicas=2)
    """
    if engine == "ray":
        from .ray_engine import serve_ray
        return serve_ray(folder, replicas=2 if replicas is None and autoscale is None else replicas,
                         autoscale=autoscale, ray_address=ray_address, host=host, port=port, dataset=dataset,
                         token=token, device="cpu" if device == "auto" else device, threads=threads, log=log,
                         log_images=log_images, log_image_bytes=log_image_bytes, log_images_below=log_images_below,
                         log_texts=log_texts, max_batch=max_batch, max_wait_ms=max_wait_ms,
                         max_body_bytes=max_body_bytes, max_pixels=max_pixels, max_text_chars=max_text_chars,
                         log_text_chars=log_text_chars, **ray_options)
    if engine != "process" or replicas is not None or autoscale is not None or ray_address or ray_options:
        raise ValueError(f"engine must be 'process' (one process, the default) or 'ray'; replicas, autoscale, "
                         f"ray_address and {sorted(ray_options) or 'the Ray options'} are for engine='ray'")
    if max_pixels is None:
        max_pixels = getattr(dataset, "max_pixels", None) or Settings.max_pixels
    service, sock = _open_and_bind(folder, host, port, dataset=dataset, device=device, threads=threads, log=log,
                                   log_images=log_images, log_image_bytes=log_image_bytes,
                                   log_images_below=log_images_below, log_texts=log_texts, token=token,
                                   max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes,
                                   max_pixels=max_pixels, max_text_chars=max_text_chars,
                                   log_text_chars=log_text_chars)
    return ServerHandle(service, host, sock)


def _open_and_bind(folder, host: str, port: int | None, **kw) -> tuple[Service, socket.socket]:
    if not kw.get("token") and host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"serving on {host} without a token: anyone who can reach this machine can use the model "
                      f"(pass token=..., or NBML_TOKEN for `nbml serve`)", stacklevel=3)
    service = open_service(folder, **kw)
    try:
        return service, _bind(host, port)
    except BaseException:
        if service.log is not None:
            service.log.close()
        raise


def run_foreground(folder, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, quiet: bool = False, **kw) -> None:
    """What `nbml serve DIR` runs: serve until Ctrl-C or SIGTERM, then stop cleanly (the log is written)."""
    service, sock = _open_and_bind(folder, host, port, **kw)
    url = _url(host, sock.getsockname()[1])
    if not quiet:
        where = service.log.where if service.log is not None else "off"
        auth = ' -H "Authorization: Bearer $NBML_TOKEN"' if service.settings.token else ""
        print(f"nbml: serving {service.name} at {url} ({service.metrics.runner}, {service.runner.precision}); "
              f"prediction log: {where}\n"
              f"  POST {url}/predict   POST {url}/v2/models/{service.name}/infer   GET {url}/metrics\n"
              f"  try: curl{auth} {service.inputs.try_it} {url}/predict\n  Ctrl-C to stop", flush=True)
    server = _uvicorn_server(service)
    server.capture_signals = lambda: _stop_on_signals(server)
    service.admin_secret = secrets.token_urlsafe(32)
    service.on_stop = lambda: setattr(server, "should_exit", True)
    registration = _register(service, host, sock.getsockname()[1])
    atexit.register(registry.unregister, registration)
    try:
        server.run(sockets=[sock])
    finally:
        registry.unregister(registration)
        atexit.unregister(registry.unregister)
        if service.log is not None:
            service.log.close()
    if not quiet:
        print(f"nbml: stopped after {service.metrics.request_count} requests; the prediction log is written",
              flush=True)


@contextlib.contextmanager
def _stop_on_signals(server):
    """SIGINT / SIGTERM stop the server gracefully, and the command then exits normally (uvicorn's own handler
    raises the signal again once stopped, which would kill the process with a traceback or a signal status)."""
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
