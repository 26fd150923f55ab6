"""``_checks``: the one validator for numbers. The library, the command line and the
simulator refuse a bad number in the same words, because they all ask it."""

from __future__ import annotations

import math

import pytest

from qianfan_export_wait._checks import check_count, check_number
from qianfan_export_wait.cli import main
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.simulator import SimulatorConfig
from qianfan_export_wait.waiting import PollPolicy


def test_a_non_finite_number_is_refused_in_the_same_words_everywhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    words = "must be a finite number of seconds"
    with pytest.raises(ConfigurationError, match=f"min_delay {words}"):
        PollPolicy(min_delay=math.nan)
    with pytest.raises(ConfigurationError, match=f"slow_delay {words}"):
        SimulatorConfig(slow_delay=math.nan)
    with pytest.raises(SystemExit):
        main(["wait", "1", "--min-delay", "nan"])
    assert f"--min-delay {words}" in capsys.readouterr().err


def test_the_simulator_refuses_an_infinite_window_like_everything_else() -> None:
    with pytest.raises(ConfigurationError, match="max_future_seconds"):
        SimulatorConfig(max_future_seconds=math.inf)


@pytest.mark.parametrize("value", [True, "3", None, 1.5])
def test_a_count_must_be_an_int_and_not_a_bool(value: object) -> None:
    with pytest.raises(ConfigurationError, match="must be an int"):
        check_count("workers", value)


def test_a_count_outside_its_bounds_names_them() -> None:
    with pytest.raises(ConfigurationError, match="from 0 to 65535, got 70000"):
        check_count("--port", 70000, minimum=0, maximum=65535)
    assert check_count("seed", -5, minimum=None) == -5


def test_a_number_may_include_its_minimum_when_asked() -> None:
    assert check_number("rate", 0, unit="fraction", inclusive=True, maximum=1) == 0.0
    with pytest.raises(ConfigurationError, match=">= 0 and <= 1"):
        check_number("rate", 1.5, unit="fraction", inclusive=True, maximum=1)
