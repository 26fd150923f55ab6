"""The create journal under a crash at any byte: reopened, it never lets an evaluation be
created again once a create of it may have been sent, and what a resumed run appends
after a torn line is read back intact."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from qianfan_export_wait.job import Journal

EVENTS = ("creating", "created", "uncertain", "not_created")
entries = st.lists(
    st.tuples(st.sampled_from([1, 2, "ame-x"]), st.sampled_from(EVENTS)), min_size=1, max_size=8
)


def _may_create(last: dict[str, object] | None) -> bool:
    return last is None or last["event"] == "not_created"


@settings(max_examples=200, deadline=None)
@given(entries, st.data(), entries)
def test_a_journal_cut_at_any_byte_then_resumed_keeps_every_durable_entry(
    before: list[tuple[int | str, str]], data: st.DataObject, after: list[tuple[int | str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "journal.jsonl"
        journal = Journal(path)
        for eval_id, event in before:
            journal.write(eval_id, event, export_id=7)
        journal.close()
        raw = path.read_bytes()
        cut = data.draw(st.integers(min_value=0, max_value=len(raw)), label="cut")
        path.write_bytes(raw[:cut])  # the crash: everything after byte `cut` never landed
        # an entry is there when its JSON is whole (its newline may not have landed)
        ends = [index for index, byte in enumerate(raw) if byte == ord("\n")]
        kept = sum(1 for end in ends if end <= cut)
        expected: dict[str, object] = {}
        for eval_id, event in before[:kept]:
            expected[repr(eval_id)] = event
        resumed = Journal(path)
        for eval_id in (1, 2, "ame-x"):
            last = resumed.last(eval_id)
            assert (None if last is None else last["event"]) == expected.get(repr(eval_id))
        for eval_id, event in after:  # the resumed run goes on writing
            resumed.write(eval_id, event, export_id=8)
            expected[repr(eval_id)] = event
        resumed.close()
        again = Journal(path)
        for eval_id in (1, 2, "ame-x"):
            last = again.last(eval_id)
            assert (None if last is None else last["event"]) == expected.get(repr(eval_id))
            if expected.get(repr(eval_id)) in ("creating", "uncertain", "created"):
                assert not _may_create(last)
        again.close()
