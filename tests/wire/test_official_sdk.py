"""The official ``qianfan`` SDK against the simulator: the simulator must answer the
SDK's own request (unsorted signed headers incl. ``request-source``, 300 s expiration)
exactly as the platform does. Skipped unless ``qianfan`` is installed (it is not a
dependency; see the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qianfan_export_wait.simulator import Simulator, SimulatorConfig
from qianfan_export_wait.testing import generate_credentials, serve_in_thread

qianfan = pytest.importorskip("qianfan")
qianfan_config = pytest.importorskip("qianfan.config")
qianfan_errors = pytest.importorskip("qianfan.errors")
Model: Any = pytest.importorskip("qianfan.resources").Model


@pytest.fixture
def simulator() -> Simulator:
    return Simulator(generate_credentials(), SimulatorConfig(seed=0))


@pytest.fixture
def sdk_env(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The simulator served from a thread, and the SDK's environment pointed at it."""
    with serve_in_thread(simulator) as base_url:
        monkeypatch.setenv("QIANFAN_ACCESS_KEY", simulator.credentials.access_key)
        monkeypatch.setenv("QIANFAN_SECRET_KEY", simulator.credentials.secret_key)
        monkeypatch.setenv("QIANFAN_CONSOLE_API_BASE_URL", base_url)
        # The SDK reads its environment once into a cached global Config.
        monkeypatch.setattr(qianfan_config, "_GLOBAL_CONFIG", None)
        yield base_url
        monkeypatch.setattr(qianfan_config, "_GLOBAL_CONFIG", None)


def test_sdk_reads_a_storage_export_by_int_id(simulator: Simulator, sdk_env: str) -> None:
    export = simulator.add_export(finish_after=0, export_type="storage")
    response = Model.get_evaluation_result_export_task_status(export_task_id=export.export_id)
    assert response.code == 200
    result = response.body["result"]
    assert result["exportID"] == export.export_id
    assert result["exportIDStr"] == export.export_id_str
    assert (result["state"], result["exportType"]) == ("Done", "storage")
    assert result["volumeId"] and result["exportPath"]
    assert response.body["log_id"].isdigit()


def test_sdk_reads_a_local_export_by_string_id(simulator: Simulator, sdk_env: str) -> None:
    export = simulator.add_export(finish_after=0, export_type="local")
    response = Model.get_evaluation_result_export_task_status(export_task_id=export.export_id_str)
    result = response.body["result"]
    assert result["exportID"] == export.export_id
    assert result["state"] == "Done"
    file_name = result["exportPath"].rpartition("/")[2]
    assert result["downloadUrl"].partition("?")[0].endswith("/" + file_name)


def test_sdk_sees_a_running_export_as_uploading(simulator: Simulator, sdk_env: str) -> None:
    export = simulator.add_export(finish_after=60, uploading_after=0)
    response = Model.get_evaluation_result_export_task_status(export_task_id=export.export_id)
    assert response.body["result"]["state"] == "Uploading"


def test_sdk_raises_api_error_500001_for_an_unknown_id(simulator: Simulator, sdk_env: str) -> None:
    with pytest.raises(qianfan_errors.APIError) as caught:
        Model.get_evaluation_result_export_task_status(export_task_id=404)
    assert caught.value.error_code == 500001
    assert simulator.stats.requests_by_outcome["invalid"] == 1


def test_sdk_with_a_wrong_secret_key_gets_http_401(
    simulator: Simulator, sdk_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator.add_export(finish_after=0)
    monkeypatch.setenv("QIANFAN_SECRET_KEY", "0" * 32)
    monkeypatch.setattr(qianfan_config, "_GLOBAL_CONFIG", None)
    with pytest.raises(qianfan_errors.RequestError) as caught:
        Model.get_evaluation_result_export_task_status(export_task_id=1)
    assert caught.value.status_code == 401
    assert "SignatureDoesNotMatch" in str(caught.value)
    assert simulator.stats.requests_by_outcome["auth_failed"] == 1


def test_sdk_does_not_retry_code_18_by_default(simulator: Simulator, sdk_env: str) -> None:
    simulator.add_export(finish_after=0)
    simulator.configure(qps=1)
    Model.get_evaluation_result_export_task_status(export_task_id=1)
    with pytest.raises(qianfan_errors.APIError) as caught:
        Model.get_evaluation_result_export_task_status(export_task_id=1)
    assert caught.value.error_code == 18
    assert simulator.stats.requests_by_outcome["throttled"] == 1
