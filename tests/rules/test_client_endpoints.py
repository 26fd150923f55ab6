"""Endpoints (``validate_base_url``, and where a client's comes from): ``scheme://host
[:port]`` only, https, or plain http to loopback unless allowed. Pure checks before any
I/O; the command line's use of them is tested in ``test_hardening_input.py``."""

from __future__ import annotations

import pytest

from qianfan_export_wait.auth import Credentials
from qianfan_export_wait.client import ExportStatusClient, validate_base_url
from qianfan_export_wait.errors import ConfigurationError

CREDENTIALS = Credentials("ak", "sk")


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("", "empty"),
        ("qianfan.baidubce.com", "needs a scheme"),
        ("127.0.0.1:8080", "needs a scheme"),
        ("ftp://qianfan.baidubce.com", "needs a scheme"),
        ("https://", "needs a scheme"),
        ("https://qianfan.baidubce.com/wenxinworkshop", "has a path"),
        ("https://qianfan.baidubce.com/a/..", "has a path"),
        ("https://qianfan.baidubce.com?x=1", "query"),
        ("https://qianfan.baidubce.com#frag", "fragment"),
        ("https://ak:sk@qianfan.baidubce.com", "must not carry credentials"),
        ("https://ak@qianfan.baidubce.com", "must not carry credentials"),
        ("http://127.0.0.1:1:1", "not a URL"),
    ],
)
def test_bad_endpoint_is_a_configuration_error_saying_why(endpoint: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        validate_base_url(endpoint)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://qianfan.baidubce.com", "https://qianfan.baidubce.com"),
        ("https://qianfan.baidubce.com/", "https://qianfan.baidubce.com"),
        (" https://qianfan.baidubce.com ", "https://qianfan.baidubce.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.8.9.10:1", "http://127.8.9.10:1"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:8443", "http://[::1]:8443"),
    ],
)
def test_good_endpoint_is_accepted_without_its_trailing_slash(endpoint: str, expected: str) -> None:
    assert ExportStatusClient(CREDENTIALS, base_url=endpoint).base_url == expected


@pytest.mark.parametrize(
    "endpoint", ["http://10.0.0.1:8080", "http://qianfan.baidubce.com", "http://0.0.0.0:80"]
)
def test_plain_http_to_a_non_loopback_host_is_refused_naming_the_switch(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="plain http") as caught:
        validate_base_url(endpoint)
    assert "--insecure-http" in str(caught.value)
    assert "allow_insecure_http=True" in str(caught.value)


def test_plain_http_to_a_non_loopback_host_is_accepted_only_when_allowed() -> None:
    client = ExportStatusClient(
        CREDENTIALS, base_url="http://10.0.0.1:8080", allow_insecure_http=True
    )
    assert client.base_url == "http://10.0.0.1:8080"


def test_endpoint_comes_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QIANFAN_CONSOLE_API_BASE_URL", "http://127.0.0.1:8421")
    assert ExportStatusClient(CREDENTIALS).base_url == "http://127.0.0.1:8421"


def test_bad_endpoint_in_the_environment_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QIANFAN_CONSOLE_API_BASE_URL", "http://example.com")
    with pytest.raises(ConfigurationError):
        ExportStatusClient(CREDENTIALS)


def test_explicit_endpoint_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIANFAN_CONSOLE_API_BASE_URL", "http://127.0.0.1:1")
    client = ExportStatusClient(CREDENTIALS, base_url="https://qianfan.baidubce.com")
    assert client.base_url == "https://qianfan.baidubce.com"


def test_default_endpoint_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QIANFAN_CONSOLE_API_BASE_URL", raising=False)
    assert ExportStatusClient(CREDENTIALS).base_url == "https://qianfan.baidubce.com"
