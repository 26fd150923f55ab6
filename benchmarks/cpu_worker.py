"""A measured process of its own: ``python -m benchmarks.cpu_worker [--stdlib-json]
[--event-loop asyncio|uvloop] MODE ...``.

Each measured side runs in a fresh process, so its JSON parser and event loop are chosen
before the library is imported, as a user's install would choose them:

* ``client URL ROUNDS CALLS``: the client suite's alternating rounds of ``get_status``
  against a naive aiohttp POST + ``json()``; prints their per-call CPU as JSON.
* ``get-status URL FIRST LAST CONCURRENCY``: ``CONCURRENCY`` coroutines call
  ``get_status`` on ids ``FIRST..LAST`` in turn until killed; the parent reads this
  process's CPU from ``/proc`` and the request count from the simulator.
* ``cli ARG ...``: ``qianfan-export-wait ARG ...``.

``--stdlib-json`` hides orjson from the library, as if the ``fast`` extra were not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_worker")
    parser.add_argument("--stdlib-json", action="store_true")
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("mode", choices=("client", "get-status", "cli"))
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


async def _get_status_forever(url: str, first: int, last: int, concurrency: int) -> None:
    from .common import make_client

    async with make_client(url) as client:
        ids = list(range(first, last + 1))

        async def caller(offset: int) -> None:
            index = offset
            while True:
                await client.get_status(ids[index % len(ids)])
                index += concurrency

        print("READY", flush=True)
        await asyncio.gather(*(caller(offset) for offset in range(concurrency)))


def main(argv: list[str] | None = None) -> int:
    """Run one measured side; see the module docstring."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.stdlib_json:
        sys.modules["orjson"] = None  # type: ignore[assignment]  # import orjson -> ImportError
    from qianfan_export_wait import _json

    if args.mode == "cli":
        from qianfan_export_wait.cli import main as cli_main

        return cli_main([*args.rest, "--event-loop", args.event_loop])
    from qianfan_export_wait.console.signals import loop_factory

    loop = loop_factory(args.event_loop)()
    try:
        if args.mode == "client":
            from .suite_client import measure

            url, rounds, calls = args.rest
            figures = loop.run_until_complete(measure(url, int(rounds), int(calls)))
            print(json.dumps({"fast_json": _json.FAST, **figures}), flush=True)
        else:
            url, first, last, concurrency = args.rest
            loop.run_until_complete(
                _get_status_forever(url, int(first), int(last), int(concurrency))
            )
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
