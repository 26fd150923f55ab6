"""The scale suite's 1M-int-ids peak-RSS case alone, ``N`` times (``suite_scale._cli_run``):
``python -m benchmarks.rss_1m N [CLI options...]``; ``STOP_AFTER`` (seconds, default 12)
sets when SIGTERM is sent. One JSON object a run on stdout."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile

from .simserver import SimProcess
from .suite_scale import _MILLION_SECONDS, _cli_run, _write_ids


async def main(runs: int, extra: list[str]) -> None:
    """Write a million held exports' ids once, then run the CLI on them ``runs`` times."""
    stop_after = float(os.environ.get("STOP_AFTER", _MILLION_SECONDS))
    async with SimProcess(log_requests=True) as sim:
        with tempfile.TemporaryDirectory() as folder:
            path = await _write_ids(sim, folder, 1_000_000, False)
            for n in range(runs):
                gc.collect()
                options = ["--timeout", "3600", *extra]
                result = await _cli_run(sim, path, 1_000_000, options, stop_after)
                print(json.dumps({"run": n, "extra": extra, **result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
