"""What the command line and the demo print: JSON lines on stdout, a progress display and
messages on stderr, exit codes, and the runs that produce them.

::

    records.py    the JSON object of one export, and strict ASCII JSON lines
    printer.py    input or completion order
    output.py     LineWriter: stdout from a thread of its own
    progress.py   the live bar and the summary
    terminal.py   Console: both streams of a run
    inputs.py     ids from arguments and files; an earlier run's lines (--resume)
    downloads.py  files fetched while the waiting goes on
    tally.py      counts, and the exit code they add up to
    exits.py      exit codes; UsageError (exit 64)
    signals.py    SIGINT, SIGTERM and a closed stdout: Interrupt
    run.py        run_wait, run_status
"""

from .exits import EXIT_CODES_HELP, ExitCode, UsageError
from .inputs import EarlierRun, gather_ids, read_earlier_run
from .printer import ORDERS
from .records import json_line, outcome_record, record_for
from .run import WaitPlan, run_status, run_wait
from .signals import Interrupt, run_interruptible
from .tally import Tally
from .terminal import Console, DisplayLogHandler

__all__ = [
    "EXIT_CODES_HELP",
    "ORDERS",
    "Console",
    "DisplayLogHandler",
    "EarlierRun",
    "ExitCode",
    "Interrupt",
    "Tally",
    "UsageError",
    "WaitPlan",
    "gather_ids",
    "json_line",
    "outcome_record",
    "read_earlier_run",
    "record_for",
    "run_interruptible",
    "run_status",
    "run_wait",
]
