"""Run every benchmark (or the ones named) and print their figures.

Usage: ``python -m bench`` for all, ``python -m bench gateway sender`` for some.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
import time

import bench


def available() -> list[str]:
    return sorted(
        m.name.removesuffix("_bench")
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.endswith("_bench")
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = set(names) - set(available())
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {available()}")
        return 2
    for name in names:
        module = importlib.import_module(f"bench.{name}_bench")
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        figures: dict[str, float] = asyncio.run(module.run())
        for key, value in figures.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
            print(f"  {key:<48} {shown}")
        print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
