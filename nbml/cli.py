"""The `nbml` command: `nbml demo`, `nbml serve DIR`, `nbml version`."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "help"
    if command == "demo":
        from .demo import main as demo
        demo(argv)
        return 0
    if command == "serve":
        from .serving.cli import main as serve
        return serve(argv)
    if command == "version":
        from . import __version__
        print(__version__)
        return 0
    print("usage: nbml demo [--arch NAME] [--epochs N] | nbml serve DIR [--host H] [--port P] | nbml version", file=sys.stderr)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
