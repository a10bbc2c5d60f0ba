import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


@pytest.fixture(scope="module")
def browser():
    """Chromium through Playwright, one per test module (the browser tests skip without Chromium)."""
    from playwright.sync_api import sync_playwright
    from lab import launch
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def wait_ready(url: str, proc, timeout: float = 60) -> None:
    """Poll a model server started as `proc` until /v2/health/ready answers 200, it exits, or `timeout` passes."""
    import time
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def widget_reply(widget, **content):
    """What a widget's front end does: send a custom message. Returns (messages the widget sent before its reply,
    the `done` reply), after checking the reply answers this message."""
    replies = []
    original = widget.send
    widget.send = lambda msg, buffers=None: replies.append(msg)
    try:
        widget._dispatch(widget, {"seq": 7, **content}, [])
    finally:
        widget.send = original
    assert replies and replies[-1]["type"] == "done" and replies[-1]["seq"] == 7
    return replies[:-1], replies[-1]


def make_images(folder, per_class=12, size=32, seed=0):
    """Class folders of small noisy images whose dominant colour is the class: learnable in seconds."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-60, 60, (size, size, 3))
            arr = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / name / f"{i}.png")
    return folder


def trained_and_exported(root, name, epochs=1, lr=2e-3):
    """The colour images in a project under `root`, a model trained on them (one epoch: barely better than chance;
    three at lr 1e-2: every validation item right, by a wide margin) and exported to root/name:
    (images folder, Dataset, Model, artifact folder). The caller closes the Dataset."""
    import nbml
    images = make_images(root / "images")
    ds = nbml.Dataset(root / "colours.nbml")
    ds.add_images(images)
    model = nbml.train(ds, arch="test_resnet", epochs=epochs, size=32, bs=8, lr=lr, pretrained=False, quiet=True,
                       seed=0)
    return images, ds, model, model.export(root / name)


@pytest.fixture
def image_folder(tmp_path):
    return make_images(tmp_path / "images")


@pytest.fixture
def ds(tmp_path, image_folder):
    import nbml
    d = nbml.Dataset(tmp_path / "project.nbml")
    d.add_images(image_folder)
    yield d
    d.close()


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (tests/pg.py); skipped only when it cannot be had."""
    from pg import Cluster, binaries
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql (as .ci/run does)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg 3 is not installed: pip install 'psycopg[binary]' (in the dev extras)")
    cluster = Cluster(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """Where a test project lives: a SQLite file, or a fresh database of the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return tmp_path / "project.nbml"
    return request.getfixturevalue("postgres").new_database()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Lets fixtures see whether the test failed (the browser tests screenshot every widget then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
