"""BOS GetObject requests are built exactly as Baidu's bce-python-sdk builds them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.bos import BosObject, get_object_headers, object_url
from qianfan_export_wait.errors import ConfigurationError, DownloadSourceError
from qianfan_export_wait.simulator.verify import verify_authorization

VECTORS_FILE = Path(__file__).parents[1] / "vectors" / "bos_get_object_generated.json"
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


@pytest.mark.parametrize(
    "key",
    ["a/../b.csv", "../etc/passwd", "a/./b.csv", "a/..", ".", "x/" * 600 + "k.csv"],
)
def test_object_key_with_dot_segments_or_too_long_is_refused_naming_it(key: str) -> None:
    """Before the fix ``a/../b.csv`` went out as ``/bucket/a/../b.csv``: a raw ``..``
    segment that any HTTP stack may resolve to another object."""
    with pytest.raises(DownloadSourceError, match="exportPath") as caught:
        BosObject("bucket", key)
    assert (repr(key) if len(key) < 100 else "1024 bytes") in str(caught.value)


@pytest.mark.parametrize(
    "bucket",
    ["ab", "a" * 64, "Upper", "under_score", "dot.ted", "-lead", "trail-", "evil.com:80#", "ü-bkt"],
)
def test_bucket_that_cannot_be_a_bos_bucket_is_refused_naming_it(bucket: str) -> None:
    """Before the fix ``evil.com:80#`` built the host ``evil.com:80#.bj.bcebos.com``."""
    with pytest.raises(DownloadSourceError, match="volumeId") as caught:
        BosObject(bucket, "k.csv")
    assert repr(bucket) in str(caught.value)
    assert "3-63" in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(bucket=st.text(max_size=70), key=st.text(max_size=80))
def test_any_bucket_and_key_is_refused_or_encoded_as_bos_does(bucket: str, key: str) -> None:
    """Whatever the status says: refused with ``DownloadSourceError``, or a request whose
    host is ``<bucket>.bj.bcebos.com`` and whose path is the key encoded by the SDK's rule
    (``normalize_string``: all but ``A-Z a-z 0-9 . ~ - _`` and ``/``), with no dot segment."""
    try:
        obj = BosObject(bucket, key)
    except DownloadSourceError:
        return
    url, raw_path = object_url(URL("https://bj.bcebos.com"), obj)
    assert url.raw_host == f"{bucket}.bj.bcebos.com"
    assert all(_DNS_LABEL.fullmatch(label) for label in url.raw_host.split("."))
    assert raw_path == f"/{key}"
    expected = "".join(
        "/" if byte == ord("/") else chr(byte) if chr(byte) in _UNRESERVED else f"%{byte:02X}"
        for byte in key.encode("utf-8")
    )
    assert url.raw_path == f"/{expected}"
    assert not {".", ".."} & set(url.raw_path.split("/"))
    assert str(url) == f"https://{bucket}.bj.bcebos.com/{expected}"


_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.~-_")
