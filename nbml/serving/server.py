"""`nbml.serve(folder)` / `model.serve()`: an exported model behind an HTTP server, in a background thread (a
notebook cell returns at once) or in the foreground (`nbml serve DIR` from a shell)."""
from __future__ import annotations

import atexit
import contextlib
import errno
import html
import json
import os
import secrets
import signal
import socket
import threading
import time
import warnings
from pathlib import Path

from . import registry
from .address import Address, colab_iframe, locate
from .app import Service, Settings, build_app, inputs_for

__all__ = ["serve", "ServerHandle", "open_service", "run_foreground"]

DEFAULT_PORT = 8000


def _read_artifact(folder) -> tuple[Path, dict]:
    folder = Path(os.fspath(folder)).expanduser().resolve()
    if folder.suffix == ".pkl":
        raise ValueError(f"{folder} is a pickle; nbml never serves pickles. Load the model from its nbml folder and "
                         f"export it: nbml.load(folder).export('my-model')")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not an exported nbml model (no config.json): write one with "
                                f"model.export('{folder.name}')")
    config = json.loads(config_file.read_text())
    if config.get("format") != "nbml-model":
        raise ValueError(f"{config_file} is not an nbml model config (format {config.get('format')!r})")
    if "onnx" not in config:
        raise ValueError(f"{folder} holds a saved model but not an exported one (no ONNX graph): run "
                         f"nbml.load('{folder}').export('{folder}') first")
    return folder, config


def open_service(folder, *, dataset=None, device: str = "auto", threads: int | None = None, log=True,
                 log_images: int = 0, log_image_bytes: int = 2_000_000, log_images_below: float = 1.01,
                 log_texts: int = 10_000, flush_s: float = 1.0, **settings) -> Service:
    """Load the artifact, pick the runner, open the prediction log: everything but the HTTP socket."""
    from ..predlog import LOG_FILE, PredictionLog
    folder, config = _read_artifact(folder)
    settings = Settings(**settings)
    inputs = inputs_for(folder, config, settings)      # the kind's half: images or texts
    runner = inputs.make_runner(folder, config, device, threads)
    prediction_log = None
    if log:
        target = dataset if dataset is not None else (Path(log) if isinstance(log, (str, os.PathLike))
                                                      else folder / LOG_FILE)
        keep, largest = inputs.log_budget(log_images=log_images, log_image_bytes=log_image_bytes,
                                          log_texts=log_texts, log_text_chars=settings.log_text_chars)
        prediction_log = PredictionLog(target, model=config["name"], log_images=keep, max_image_bytes=largest,
                                       images_below=log_images_below, flush_s=flush_s)
    service = Service(folder, config, runner, settings, prediction_log, inputs)
    service.warm_up()
    return service


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


class ServerHandle:
    """A server running in a background thread: `.url`, `.stop()`, `.requests`; shows itself in a notebook.

    `.url` is the address the user can open (through Jupyter's proxy on JupyterHub, Binder or a Jupyter server, or
    Colab's port proxy; see nbml.serving.address); `.direct_url` is http://127.0.0.1:<port>, for code running in
    the kernel itself."""

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
    def address(self) -> Address:
        """Where the user reaches this server (worked out once: in Colab it asks the front end)."""
        if self._address is None:
            self._address = locate(self.proxy_name, self.direct_url, self.port)
        return self._address

    @property
    def url(self) -> str:
        return self.address.url

    def iframe(self, path: str = "/", height: int = 300):
        """The server's page in the output: Colab's port proxy in Colab, else an IFrame of `.url`."""
        if colab_iframe(self.port, path, height):
            return None
        from IPython.display import IFrame
        return IFrame(self.url + path, width="100%", height=height)

    @property
    def log(self):
        return self.service.log

    @property
    def folder(self) -> Path:
        return self.service.folder

    @property
    def requests(self) -> int:
        """Requests answered so far (all endpoints, errors included)."""
        return self.service.metrics.request_count

    @property
    def predictions(self) -> int:
        return self.service.metrics.prediction_count

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped.is_set()

    def stop(self, timeout: float = 30) -> None:
        """Stop accepting requests, finish those in flight, write the prediction log, free the port."""
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

    def curl(self, direct: bool = False) -> str:
        """A curl line for `.url` (Jupyter's token for a proxied address: the proxy adds the server's own token),
        or for `.direct_url`."""
        a = self.address
        if direct or not a.proxied:
            auth = ' -H "Authorization: Bearer $NBML_TOKEN"' if self.service.settings.token else ""
            return f"curl{auth} {self.service.inputs.try_it} {self.direct_url}/predict"
        auth = f' -H "{a.auth}"' if a.auth else ""
        return f"curl{auth} {self.service.inputs.try_it} {a.url}/predict"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        also = f" (direct: {self.direct_url})" if self.address.proxied else ""
        return (f"ServerHandle({self.name} at {self.url}{also}, {state}, {self.requests} requests)\n"
                f"  try: {self.curl()}")

    # -- notebook display: the URL, a curl line to copy, and a request count that updates itself -------------------
    def _html(self) -> str:
        state = "running" if self.running else "stopped"
        colour = "#1a7f37" if self.running else "#888"
        a = self.address
        url = html.escape(a.url)
        also = ""
        if a.proxied:
            also = f' (in the kernel: <code>{html.escape(self.direct_url)}</code>)'
            if a.redirect_url:
                also += f' &middot; <a href="{html.escape(a.redirect_url)}" target="_blank">link to share</a>'
        return (f'<div style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.6">'
                f'<b>nbml server</b> <span style="color:{colour}">&#9679; {state}</span> &middot; model '
                f'<code>{html.escape(self.name)}</code> &middot; <a href="{url}/" target="_blank">{url}</a>{also} '
                f'&middot; '
                f'<b>{self.requests}</b> requests, {self.predictions} predictions &middot; '
                f'{html.escape(self.service.metrics.runner)}<br>'
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
          log_texts: int = 10_000, log_text_chars: int = 2_000) -> ServerHandle:
    """Serve an exported model (a folder written by `model.export`) in the background; returns a handle at once.

    - `host`: 127.0.0.1 (this machine only) unless told otherwise; `port`: 8000 if free, else any free port
      (`port=0`: any free port; a given port must be free).
    - `token`: when set, every request but the health checks needs `Authorization: Bearer <token>`.
    - `device`: "auto" (torch on a GPU if there is one, else ONNX Runtime on the CPU), "cpu", "cuda", ...
    - `max_batch`, `max_wait_ms`: dynamic batching of concurrent requests.
    - `max_body_bytes` (413 above it), `max_pixels` (decompression-bomb limit; the project's when `dataset` is given).
    - `log`: each prediction goes to `dataset`'s store if given, else to `<folder>/predictions.sqlite` (or a path
      given here; `log=False` for none). `log_images=N` also keeps up to N input images (each at most
      `log_image_bytes`, only below confidence `log_images_below`) for `ds.add_from_log`. Rows reach the disk at
      most a second after the answer, and all of them when the server stops (see nbml.predlog).
    - Text models take `{"text": ...}` or `{"texts": [...]}` on /predict and a BYTES input `text` on the Open
      Inference Protocol; a text over `max_text_chars` characters is refused (400). The log keeps the first
      `log_text_chars` characters of each text, for `log_texts` texts in all (below `log_images_below`), so
      `ds.add_from_log` can bring them back.
    """
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
