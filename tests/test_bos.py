"""BOS GetObject requests are built exactly as Baidu's bce-python-sdk builds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.bos import BosObject, get_object_headers, object_url
from qianfan_export_wait.errors import ConfigurationError, DownloadSourceError
from qianfan_export_wait.simulator.verify import verify_authorization

VECTORS_FILE = Path(__file__).parent / "vectors" / "bos_get_object_generated.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text("utf-8"))["vectors"]


def _endpoint(vector: dict[str, Any]) -> URL:
    text = vector["endpoint"]
    return URL(text if "//" in text else f"{vector['scheme']}://{text}")


def _build(vector: dict[str, Any]) -> tuple[URL, dict[str, str]]:
    obj = BosObject(vector["bucket"], vector["key"])
    url, raw_path = object_url(_endpoint(vector), obj)
    first, last = vector["range"] or (None, None)
    headers = get_object_headers(
        Credentials(vector["access_key"], vector["secret_key"]),
        url,
        raw_path,
        vector["timestamp"],
        first_byte=first,
        last_byte=last,
    )
    return url, headers


def test_vectors_cover_virtual_hosted_path_style_and_cname_endpoints() -> None:
    hosts = {vector["connect_host"] for vector in VECTORS}
    assert {"127.0.0.1", "localhost", "files.cdn.bcebos.com"} <= hosts
    assert any(host.startswith("modelrepo-test.") for host in hosts)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['endpoint']}|{v['key']}")
def test_request_target_matches_baidus_sdk(vector: dict[str, Any]) -> None:
    url, _ = _build(vector)
    assert url.raw_path == vector["target"]
    assert url.host == vector["connect_host"]
    assert url.port == vector["connect_port"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['endpoint']}|{v['key']}")
def test_headers_and_signature_match_baidus_sdk(vector: dict[str, Any]) -> None:
    _, headers = _build(vector)
    assert headers == vector["headers"]


def test_signature_verifies_with_the_simulators_verifier() -> None:
    credentials = Credentials("ak-bos-test", "sk-bos-test")
    url, raw_path = object_url(URL("http://127.0.0.1:8421"), BosObject("bkt", "a b/c.csv"))
    headers = get_object_headers(credentials, url, raw_path, 1_700_000_000, first_byte=5)
    failure = verify_authorization(
        credentials,
        method="GET",
        raw_path=url.raw_path,
        query={},
        headers=headers,
        now=1_700_000_000,
    )
    assert failure is None


def test_range_is_sent_but_not_signed() -> None:
    credentials = Credentials("ak-bos-test", "sk-bos-test")
    url, raw_path = object_url(URL("https://bj.bcebos.com"), BosObject("bkt", "k.csv"))
    plain = get_object_headers(credentials, url, raw_path, 1_700_000_000)
    ranged = get_object_headers(credentials, url, raw_path, 1_700_000_000, first_byte=10)
    assert ranged["Range"] == "bytes=10-"
    assert ranged["Authorization"] == plain["Authorization"]


@pytest.mark.parametrize("key", ["", "/leading-slash.csv", "bad\nkey.csv"])
def test_unusable_object_key_is_refused(key: str) -> None:
    with pytest.raises(DownloadSourceError):
        BosObject("bucket", key)


def test_endpoint_of_another_bucket_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="another bucket"):
        object_url(URL("https://other.bj.bcebos.com"), BosObject("mine", "k.csv"))
