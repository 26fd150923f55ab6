"""Instructions per status request and per poll, two checkouts against each other:
``python -m benchmarks.structure_instructions --before /path/to/old/checkout``.

CPU seconds on a shared machine spread by a fifth from run to run; instructions counted
by ``valgrind --tool=callgrind`` do not (the same total for the same code and inputs,
whatever else the machine does). Each side runs this file's workers under callgrind,
with the *before* checkout's ``.venv`` Python for both (the same interpreter and
libraries: only the package differs; each worker imports the package of the checkout it
runs in), twice with different sizes, so that start-up cancels out:

* ``request``: ``get_status`` of held exports against one simulator (this checkout's, in
  its own process, not counted), 32 at a time: (count(1,100) - count(100)) / 1,000;
* ``poll``: a waiter over 2,000 exports whose client answers at once, Pending ``K``
  times and then Done, no rate limit: (count(K=4) - count(K=0)) / 8,000.

Prints one JSON object: instructions per request and per poll on each side, and the
after/before ratios. Needs valgrind (Debian's package); takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_HIDE = (
    "import sys\n"
    'sys.path.insert(0, ".")\n'
    'for _n in ("prometheus_client", "opentelemetry"):\n'
    "    sys.modules[_n] = None\n"
)

_REQUESTS = (
    _HIDE
    + """
import asyncio
from qianfan_export_wait import ExportStatusClient
from qianfan_export_wait.simulator.credentials import SIMULATOR_CREDENTIALS

async def main(url, count):
    async with ExportStatusClient(SIMULATOR_CREDENTIALS, base_url=url) as client:
        ids = iter([n % 200 + 1 for n in range(count)])
        async def caller():
            for export_id in ids:
                await client.get_status(export_id)
        await asyncio.gather(*(caller() for _ in range(32)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""
)

_POLLS = (
    _HIDE
    + """
import asyncio
from tenacity import wait_none
from qianfan_export_wait.client import ClientStats
from qianfan_export_wait.models import parse_export_status
from qianfan_export_wait.ratelimit import FixedRateLimiter
from qianfan_export_wait.waiter import ExportWaiter, PollPolicy

N, K = int(sys.argv[1]), int(sys.argv[2])
def status(i, state):
    return parse_export_status({"log_id": "1", "result": {"exportID": i, "state": state}})
PENDING = {i: status(i, "Pending") for i in range(1, N + 1)}
DONE = {i: status(i, "Done") for i in range(1, N + 1)}

class Instant:
    def __init__(self):
        self.stats = ClientStats()
        self.seen = {}
    async def fetch_once(self, export_id):
        self.stats.requests += 1
        n = self.seen[export_id] = self.seen.get(export_id, 0) + 1
        return PENDING[export_id] if n <= K else DONE[export_id]

async def main():
    client = Instant()
    waiter = ExportWaiter(
        client, policy=PollPolicy(wait=wait_none(), timeout=None), limiter=FixedRateLimiter(1e9)
    )
    await waiter.wait_all(list(range(1, N + 1)))
    assert client.stats.requests == N * (K + 1), client.stats.requests
    await waiter.aclose()

asyncio.run(main())
"""
)

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(python: Path, checkout: Path, code: str, *args: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                str(python),
                "-c",
                code,
                *args,
            ],
            cwd=checkout,
            capture_output=True,
            text=True,
            check=True,
        )
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


async def _drive(before: Path) -> dict[str, object]:
    from .simserver import REPO_ROOT, SimProcess

    python = before / ".venv" / "bin" / "python"
    sides = {"before": before, "after": REPO_ROOT}
    figures: dict[str, object] = {"python": str(python)}
    async with SimProcess() as sim:
        await sim.add(200, max_seconds=0.0, fail_ratio=0.0, held=True)
        for name, checkout in sides.items():
            small, large = [
                await asyncio.to_thread(
                    _instructions, python, checkout, _REQUESTS, sim.base_url, str(n)
                )
                for n in (100, 1100)
            ]
            figures[f"{name}_per_request"] = round((large - small) / 1000)
            none, four = [
                await asyncio.to_thread(_instructions, python, checkout, _POLLS, "2000", str(k))
                for k in (0, 4)
            ]
            figures[f"{name}_per_poll"] = round((four - none) / 8000)
    for key in ("per_request", "per_poll"):
        after, old = figures[f"after_{key}"], figures[f"before_{key}"]
        assert isinstance(after, int) and isinstance(old, int)
        figures[f"after_over_before_{key}"] = round(after / old, 3)
    return figures


def main() -> None:
    """Count both sides; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the older checkout (with a .venv)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    print(json.dumps(asyncio.run(_drive(Path(args.before).resolve())), indent=1))


if __name__ == "__main__":
    main()
