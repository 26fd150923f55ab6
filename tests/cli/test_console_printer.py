"""``console.printer``: lines in the caller's order or as each export finishes, and every
id's line in its place when the run ends early."""

from __future__ import annotations

import pytest

from qianfan_export_wait.console.printer import CompletionPrinter, OrderedPrinter, printer_for

ORDERINGS = pytest.mark.parametrize(
    "ids",
    [
        [905, 3, 2**63 - 1, 17, 1],  # all numbers: the sorted-array index
        [1, 3, 17, 905, 2**63 - 1],  # ascending numbers: the index is the place
        [905, "amemt-hkkf5y9e64j8", 3, "905", 17],  # mixed: an index for ints, one for strs
        ["b", 5, "a", 1, "c"],  # strs out of order around ints
    ],
    ids=["ints", "ascending-ints", "mixed", "mixed-unsorted-strs"],
)


@ORDERINGS
def test_ordered_printer_releases_lines_in_the_callers_order_as_soon_as_it_can(
    ids: list[int | str],
) -> None:
    printer = OrderedPrinter(ids)
    finishing = [ids[2], ids[0], ids[4], ids[1]]  # the fourth id is still pending
    released = [printer.add(export_id, f"line {export_id}") for export_id in finishing]
    assert released == [
        [],
        [f"line {ids[0]}"],
        [],
        [f"line {ids[1]}", f"line {ids[2]}"],
    ]


@ORDERINGS
def test_ordered_printer_puts_pending_lines_in_their_places_at_the_end(
    ids: list[int | str],
) -> None:
    printer = OrderedPrinter(ids)
    printer.add(ids[1], "known 1")
    printer.add(ids[3], "known 3")
    pending = [(ids[0], "pending 0"), (ids[2], "pending 2"), (ids[4], "pending 4")]
    assert list(printer.remaining(pending)) == [
        "pending 0",
        "known 1",
        "pending 2",
        "known 3",
        "pending 4",
    ]


def test_ordered_printer_refuses_pending_lines_out_of_order() -> None:
    printer = OrderedPrinter([1, 2])
    with pytest.raises(AssertionError, match="out of order"):
        list(printer.remaining([(2, "two"), (1, "one")]))


def test_completion_printer_releases_each_line_at_once_and_pending_ones_last() -> None:
    printer = CompletionPrinter()
    assert printer.add(3, "three") == ["three"]
    assert list(printer.remaining([(1, "one"), (2, "two")])) == ["one", "two"]


def test_printer_for_picks_by_order_name() -> None:
    assert isinstance(printer_for("input", [1]), OrderedPrinter)
    assert isinstance(printer_for("completion", [1]), CompletionPrinter)
    with pytest.raises(ValueError, match="order"):
        printer_for("random", [1])


def test_a_line_added_later_is_made_only_when_its_turn_comes() -> None:
    made: list[object] = []

    def render(export_id: object) -> str:
        made.append(export_id)
        return f"line {export_id}"

    printer = OrderedPrinter([1, 2, 3, 4], render)
    assert printer.add_later(2) == []
    assert printer.add_later(4) == []
    assert made == []  # held as a place, not as text
    assert printer.add(1, "one") == ["one", "line 2"]
    assert made == [2]
    assert list(printer.remaining([(3, "three")])) == ["three", "line 4"]
    assert made == [2, 4]
    assert CompletionPrinter(render).add_later(9) == ["line 9"]
