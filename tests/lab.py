"""A real JupyterLab on loopback driven by Debian's Chromium through Playwright (used by tests and benchmarks)."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_available() -> bool:
    return os.path.exists(CHROMIUM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`with Lab(folder) as lab:` starts JupyterLab serving `folder`; `lab.open(page, name)` opens a notebook."""

    def __init__(self, folder: Path, xsrf: bool = False):
        self.folder, self.port, self.token = Path(folder), free_port(), secrets.token_hex(16)
        self.xsrf, self.proc = xsrf, None     # xsrf=True: Jupyter's XSRF checks on, as for a user

    def __enter__(self):
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.folder}",
               "--LabApp.expose_app_in_browser=True", f"--ServerApp.disable_check_xsrf={not self.xsrf}",
               "--allow-root", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self.log = open(self.folder / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"JupyterLab did not start; see {self.folder / 'jupyterlab.log'}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def write_notebook(self, name: str, cells: list[str]) -> None:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, self.folder / name)

    def open(self, page, name: str, run_all: bool = True) -> None:
        page.goto(f"http://127.0.0.1:{self.port}/lab/tree/{name}?token={self.token}&reset")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                               "&& window.jupyterapp.shell.currentWidget.sessionContext", timeout=90_000)
        page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget;"
                      " await w.context.ready; await w.sessionContext.ready; }")
        if run_all:
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    @staticmethod
    def active_cell_type(page) -> str:
        return page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCell.model.type")

    @staticmethod
    def wait_idle(page, timeout: float = 120) -> None:
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session"
                               ".kernel.status === 'idle'", timeout=timeout * 1000)

    @staticmethod
    def wait_run_all(page, timeout: float = 900) -> None:
        """Until every code cell has run and the kernel is idle (Run All queues them all at once)."""
        page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                               " const cells = w.content.widgets.filter((c) => c.model.type === 'code');"
                               " return w.sessionContext.session.kernel.status === 'idle'"
                               " && cells.every((c) => c.model.executionCount !== null); }",
                               timeout=timeout * 1000, polling=1000)


def block_outside(context) -> list[str]:
    """Abort every request of a browser context that would leave 127.0.0.1; returns the list of those URLs."""
    blocked = []

    def route(r):
        url = r.request.url
        host = url.split("/")[2].split(":")[0] if "://" in url else ""
        if url.startswith(("blob:", "data:")) or host == "127.0.0.1":
            return r.continue_()
        blocked.append(url)
        return r.abort()
    context.route("**/*", route)
    return blocked


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "screenshots"


@contextlib.contextmanager
def notebook_page(lab: "Lab", name: str, cells: list[str], viewport=(1400, 1000)):
    """A notebook of `cells` written into `lab` and opened in a fresh Chromium with every request outside 127.0.0.1
    blocked: yields (page, blocked URLs, page errors). When the body fails, the page's screenshot goes to
    .cache/screenshots/<name>-page.png."""
    from playwright.sync_api import sync_playwright
    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        outside = block_outside(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        lab.write_notebook(name, cells)
        lab.open(page, name)
        try:
            yield page, outside, errors
        except Exception:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{Path(name).stem}-page.png"), full_page=True)
            raise
        finally:
            browser.close()
