"""The cheap request bodies of the status calls are byte for byte what the general JSON
encoding makes, for every id the calls accept."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from qianfan_export_wait import protocol
from qianfan_export_wait.errors import ConfigurationError
from qianfan_export_wait.protocol._common import json_body

ids = st.one_of(st.integers(min_value=-5, max_value=2**64), st.text(min_size=0, max_size=40))


@given(ids)
def test_v1_status_body_is_the_json_of_the_id(value: int | str) -> None:
    try:
        request = protocol.export_status("v1").build(value)
    except ConfigurationError:
        return
    assert request.body == json_body({"exportID": value})
    assert json.loads(request.body) == {"exportID": value}


@given(st.text(min_size=0, max_size=40))
def test_v2_status_body_is_the_json_of_the_task_id(value: str) -> None:
    try:
        request = protocol.export_status("v2").build(value)
    except ConfigurationError:
        return
    assert request.body == json_body({"taskId": value})
    assert request.query == (("Action", "DescribeEvalResultExportTask"),)
