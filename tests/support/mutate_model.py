"""Mutation proofs for ``test_waiter_model.py``: each mutation breaks the rule behind one
promise; the model must fail on every one.

    python tests/support/mutate_model.py [INDEX ...]

Each mutant is a copy of the tracked files with one edit, tested with this interpreter
(the mutant's package shadows the installed one: pytest runs in its directory).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CORE = "qianfan_export_wait/waiting/core.py"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]

MUTATIONS: list[tuple[str, str, str, str]] = [
    (
        "P1 a timeout outcome is never handed",
        CORE,
        "        self.book.hand(caller, self.statuses.outcome(entry, caller, kind, now, error))",
        "        if kind is not OutcomeKind.TIMEOUT:\n"
        "            self.book.hand(\n"
        "                caller, self.statuses.outcome(entry, caller, kind, now, error)\n"
        "            )",
    ),
    (
        "P2 last looks never planned",
        CORE,
        "if looks.total and now >= looks.start():",
        "if False:",
    ),
    (
        "P2 status_age always 0",
        "qianfan_export_wait/waiting/statuses.py",
        "            at - caller.started,\n            status_age=status_age(entry, at),",
        "            at - caller.started,\n            status_age=0.0,",
    ),
    (
        "P2 the next caller's deadline is owed a look only when the nearest caller goes",
        CORE,
        "            owed = min((c.deadline for c in callers if c.deadline > covered), "
        "default=inf)\n",
        "            owed = min(c.deadline for c in callers)\n"
        "            owed = inf if owed <= covered else owed\n",
    ),
    (
        "P3 a joiner inherits the backoff",
        CORE,
        "            self.queue.push(entry, now)\n        elif due > caller.deadline:",
        "            pass\n        elif due > caller.deadline:",
    ),
    (
        "P4 the wedge: a cancelled worker's poll is never freed",
        "qianfan_export_wait/waiting/driver.py",
        "        task.add_done_callback(lambda _: self._worker_ended(worker))\n",
        "",
    ),
    (
        "P1/P4 a task cancelled in a plain async for stays registered",
        "qianfan_export_wait/waiting/handles.py",
        "        except BaseException:\n            _release_dropped(stream)\n            raise\n",
        "",
    ),
    (
        "P5 wait_all ignores its timeout",
        "qianfan_export_wait/waiting/waiter.py",
        "batch = _Batch(now, members.deadline(now, timeout), len(unique))",
        "batch = _Batch(now, members.deadline(now, None), len(unique))",
    ),
]


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[2]
    files = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    survived = 0
    for index, (name, path, old, new) in enumerate(MUTATIONS):
        if argv and str(index) not in argv:
            continue
        with tempfile.TemporaryDirectory(prefix="qew-mutant-") as tmp:
            for file in files:
                target = Path(tmp, file)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / file, target)
            source = Path(tmp, path)
            text = source.read_text()
            if text.count(old) != 1:
                print(f"{index} {name}: the code to mutate is not there (update this list)")
                return 2
            source.write_text(text.replace(old, new))
            run = subprocess.run(
                [*PYTEST, "tests/properties/test_waiter_model.py"],
                cwd=tmp,
                capture_output=True,
                text=True,
            )
        first = next((line.strip() for line in run.stdout.splitlines() if "Error: " in line), "")
        caught = run.returncode != 0
        survived += not caught
        verdict = "caught" if caught else "SURVIVED"
        print(f"{index} {name}: {verdict}  {first[:200]}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
