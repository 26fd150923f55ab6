"""The seam between the waiter's pure core and its asyncio driver, read from the source:
the driver calls a handful of ``Scheduler`` verbs and reads a few of its facts, and
writes no field of the core (nor of an entry the core owns). What an answer means is the
core's to decide (``Scheduler.answer``); the driver only reserves, takes, sends and
reports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER_SIDE = ("driver.py", "polls.py", "downloading.py", "tasks.py", "limiting.py")

VERBS = frozenset({"take", "answer", "expire", "fail", "end_all", "abort_all"})
"""What the driver tells the core: take the next due entry, here is its answer, the time
has come for deadlines, a bug ended one poll, the service ended every wait, the waiter
closed."""

PACING = frozenset({"count_request", "pause_for", "set_rate"})
"""What the driver tells the core about the rate: a request went out, a throttle asked to
pause, the limiter's rate is now this."""

FACTS = frozenset(
    {
        "ready_at",
        "next_event",
        "next_deadline",
        "resolution",
        "entries",
        "proven",
        "requests",
        "policy",
    }
)
"""What the driver reads: when to wake (and how finely), whether anyone waits, how warm
the service is."""

CORE_NAMES = frozenset({"core", "_core"})
ENTRY_NAMES = frozenset({"entry"})


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def _is_core(node: ast.expr) -> bool:
    """``core`` or ``self.core`` / ``self._core``."""
    if isinstance(node, ast.Name):
        return node.id in CORE_NAMES
    return (
        isinstance(node, ast.Attribute)
        and node.attr in CORE_NAMES
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _core_attribute(node: ast.expr) -> ast.Attribute | None:
    """The ``<core>.name`` at the bottom of ``node`` (``core.a.b[c]`` -> ``core.a``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute) and _is_core(node.value):
            return node
        node = node.value
    return None


def seam_of(source: str) -> tuple[set[str], list[str]]:
    """The core's members ``source`` uses, and each write it makes to the core or to an
    entry (``line: text``)."""
    tree = ast.parse(source)
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _is_core(node.value)
    }
    writes = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if not isinstance(target, (ast.Attribute, ast.Subscript)):
                continue
            root = _root(target)
            core_write = _core_attribute(target) is not None
            entry_write = isinstance(root, ast.Name) and root.id in ENTRY_NAMES
            if core_write or entry_write:
                writes.append(f"{node.lineno}: {ast.unparse(node)}")
    return used, writes


def test_the_driver_uses_only_the_seam_and_writes_nothing_of_the_core() -> None:
    used: set[str] = set()
    writes: list[str] = []
    for name in DRIVER_SIDE:
        found, wrote = seam_of((ROOT / "qianfan_export_wait" / "waiting" / name).read_text())
        used |= found
        writes += [f"{name}:{w}" for w in wrote]
    assert used - (VERBS | PACING | FACTS) == set()
    assert used & VERBS, "the checker found no verb: it reads the source wrong"
    assert writes == []


def test_the_checker_sees_calls_reads_and_writes_through_any_path() -> None:
    planted = (
        "def poll(self, core, entry):\n"
        "    core.take(1)\n"
        "    self._core.outage = None\n"
        "    self.core.entries[3] = entry\n"
        "    core.policy.budget += 1\n"
        "    entry.in_flight = True\n"
        "    del core.statuses[entry]\n"
        "    worker.entry = entry\n"
    )
    used, writes = seam_of(planted)
    assert used == {"take", "outage", "entries", "policy", "statuses"}
    assert [w.split(":")[0] for w in writes] == ["3", "4", "5", "6", "7"]
