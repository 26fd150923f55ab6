"""``worker`` takes its polling options from the same builder as ``wait`` and ``export``:
the same parsing, defaults and refusals, only some help texts of its own."""

from __future__ import annotations

import argparse

import pytest

from qianfan_export_wait.cli import build_parser

WORKER = ("--qps", "--min-delay", "--max-delay", "--max-in-flight", "--max-unavailable")
GIVEN = ["--qps", "7.5", "--min-delay", "0.25", "--max-delay", "9", "--max-in-flight", "3",
         "--max-unavailable", "42"]  # fmt: skip


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _actions(verb: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    [verbs] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {flag: action for action in verbs.choices[verb]._actions
            for flag in action.option_strings}  # fmt: skip


@pytest.mark.parametrize("flag", WORKER)
def test_worker_and_wait_share_default_and_metavar(flag: str) -> None:
    worker, wait = _actions("worker")[flag], _actions("wait")[flag]
    assert (worker.default, worker.metavar) == (wait.default, wait.metavar)


def test_worker_parses_the_polling_flags_as_wait_does() -> None:
    parser = build_parser()
    worker = parser.parse_args(["worker", "--redis-url", "redis://127.0.0.1:1/", *GIVEN])
    wait = parser.parse_args(["wait", "1", *GIVEN])
    for flag in WORKER:
        assert getattr(worker, _dest(flag)) == getattr(wait, _dest(flag)), flag
    assert (worker.qps, worker.max_in_flight, worker.max_unavailable) == (7.5, 3, 42.0)


@pytest.mark.parametrize(("flag", "value"), [("--min-delay", "-1"), ("--max-in-flight", "0"),
                                             ("--qps", "fast")])  # fmt: skip
def test_worker_refuses_a_bad_polling_value_as_wait_does(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    errors = []
    for argv in (["worker", flag, value], ["wait", "1", flag, value]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(argv)
        assert exited.value.code == 64  # EX_USAGE
        errors.append(capsys.readouterr().err.splitlines()[-1].partition("error: ")[2])
    assert errors[0] == errors[1], errors
    assert flag in errors[0] and value in errors[0], errors
