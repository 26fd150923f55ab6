"""Run by the ``sdk`` suite in an interpreter that has the official ``qianfan`` SDK.

Only the standard library and ``qianfan``: it may run in another virtualenv. Reads a JSON
job from argv (``ids``, ``sleep``); the endpoint and credentials come from the
environment (``QIANFAN_CONSOLE_API_BASE_URL``, ``QIANFAN_ACCESS_KEY``,
``QIANFAN_SECRET_KEY``). Loops over the pending ids one request at a time, sleeping
between rounds, as the SDK's users do, and prints one JSON object: when each export was
seen final (``time.monotonic``), the call count, and CPU and wall time of the loop alone.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    job = json.loads(sys.argv[1])
    import_started = time.process_time()
    from qianfan.resources import Model  # type: ignore[import-not-found,unused-ignore]

    import_cpu = time.process_time() - import_started
    pending = list(job["ids"])
    seen: dict[int, float] = {}
    calls = 0
    cpu_started = time.process_time()
    wall_started = time.monotonic()
    while pending:
        still = []
        for export_id in pending:
            response = Model.get_evaluation_result_export_task_status(export_id)
            calls += 1
            if response.body["result"]["state"] in ("Done", "Fail"):
                seen[export_id] = time.monotonic()
            else:
                still.append(export_id)
        pending = still
        if pending:
            time.sleep(job["sleep"])
    print(
        json.dumps(
            {
                "seen": seen,
                "calls": calls,
                "cpu_s": time.process_time() - cpu_started,
                "wall_s": time.monotonic() - wall_started,
                "import_cpu_s": import_cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
