"""The bce-auth-v1 signer, credentials and Authorization parsing."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qianfan_export_wait.auth import (
    AuthorizationParts,
    Credentials,
    canonical_headers,
    canonical_query,
    canonical_time,
    parse_authorization,
    sign,
    uri_encode,
)
from qianfan_export_wait.errors import ConfigurationError, MissingCredentialsError

SHARED_VECTORS = Path(__file__).parents[2] / ".." / "shared" / "vectors" / "bce_auth_v1.json"
GENERATED_VECTORS = Path(__file__).parents[1] / "vectors" / "bce_auth_v1_generated.json"
EXPORT_PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"
SIGNED = ("content-type", "host", "x-bce-date")


def _load_vectors(path: Path, missing_reason: str) -> list[Any]:
    if not path.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=missing_reason), id="absent")]
    vectors = json.loads(path.read_text(encoding="utf-8"))
    return [
        pytest.param(vector, id=f"{index:03d}-{vector['note'][:40]}")
        for index, vector in enumerate(vectors)
    ]


def _sign_vector(vector: dict[str, Any]) -> str:
    return sign(
        Credentials(vector["access_key"], vector["secret_key"]),
        method=vector["method"],
        path=vector["path"],
        query=vector["query"],
        headers=vector["headers"],
        timestamp=vector["timestamp"],
        expiration_seconds=vector["expiration_seconds"],
        headers_to_sign=vector["headers_to_sign"],
    )


def _export_request(credentials: Credentials, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "method": "POST",
        "path": EXPORT_PATH,
        "headers": {
            "Host": "qianfan.baidubce.com",
            "Content-Type": "application/json",
            "x-bce-date": "2024-01-04T03:20:30Z",
        },
        "timestamp": "2024-01-04T03:20:30Z",
        "headers_to_sign": SIGNED,
    }
    arguments.update(overrides)
    return sign(credentials, **arguments)


# --- known-good vectors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    _load_vectors(
        SHARED_VECTORS,
        f"shared vectors not found at {SHARED_VECTORS.resolve()} (the sibling ../shared folder)",
    ),
)
def test_sign_reproduces_shared_vector(vector: dict[str, Any]) -> None:
    assert _sign_vector(vector) == vector["authorization"]


@pytest.mark.parametrize(
    "vector",
    _load_vectors(
        GENERATED_VECTORS, "run tests/vectors/make_vectors.py to generate the Baidu vectors"
    ),
)
def test_sign_reproduces_vector_generated_by_baidu_signer(vector: dict[str, Any]) -> None:
    assert _sign_vector(vector) == vector["authorization"]


def test_generated_vector_file_holds_at_least_400_vectors() -> None:
    vectors = json.loads(GENERATED_VECTORS.read_text(encoding="utf-8"))
    assert len(vectors) >= 400


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-01-04T03:20:30Z",
        datetime(2024, 1, 4, 3, 20, 30, tzinfo=UTC),
        datetime(2024, 1, 4, 11, 20, 30, tzinfo=timezone(timedelta(hours=8))),
        1704338430,
        1704338430.9,
    ],
    ids=["str", "aware-utc", "aware-plus-8h", "epoch-int", "epoch-float-truncated"],
)
def test_every_timestamp_form_signs_the_same(credentials: Credentials, timestamp: Any) -> None:
    expected = _export_request(credentials, timestamp="2024-01-04T03:20:30Z")
    assert _export_request(credentials, timestamp=timestamp) == expected


def test_naive_datetime_timestamp_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        canonical_time(datetime(2024, 1, 4, 3, 20, 30))


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "2024-01-04 03:20:30Z",
        "2024-01-04T03:20:30",
        "2024-01-04T03:20:30+00:00",
        "2024-01-04T03:20:30.123Z",
        "2024-1-4T03:20:30Z",
        "2024-01-04T03:20:30Z\n",
        " 2024-01-04T03:20:30Z",
        "2024-13-04T03:20:30Z",
        "2024-02-30T03:20:30Z",
        "2024-01-04T25:20:30Z",
        "\uff12\uff10\uff12\uff14-01-04T03:20:30Z",  # full-width digits
    ],
)
def test_malformed_timestamp_string_is_rejected(timestamp: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH:MM:SSZ"):
        canonical_time(timestamp)


@pytest.mark.parametrize("timestamp", [True, [1704338430], b"2024-01-04T03:20:30Z"])
def test_timestamp_of_other_type_is_rejected(timestamp: Any) -> None:
    with pytest.raises(ValueError):
        canonical_time(timestamp)


def test_missing_timestamp_means_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamped = datetime.strptime(canonical_time(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamped <= datetime.now(UTC)


# --- canonical pieces ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "keep_slash", "encoded"),
    [
        ("AZaz09-._~", False, "AZaz09-._~"),
        ("/a b/", False, "%2Fa%20b%2F"),
        ("/a b/", True, "/a%20b/"),
        ("中", False, "%E4%B8%AD"),
        ("%", False, "%25"),
        ("!*'()", False, "%21%2A%27%28%29"),
        ("\xff", False, "%C3%BF"),
    ],
)
def test_uri_encode_keeps_only_unreserved_characters(
    raw: str, keep_slash: bool, encoded: str
) -> None:
    assert uri_encode(raw, keep_slash=keep_slash) == encoded


def test_canonical_query_leaves_out_authorization_in_any_case() -> None:
    query = {"b": "2", "Authorization": "x", "authorization": "y", "a": "1"}
    assert canonical_query(query) == "a=1&b=2"


def test_header_names_are_matched_case_insensitively(credentials: Credentials) -> None:
    spellings = [
        {
            "Host": "h.example",
            "Content-Type": "application/json",
            "x-bce-date": "2024-01-04T03:20:30Z",
        },
        {
            "HOST": "h.example",
            "content-TYPE": "application/json",
            "X-BCE-DATE": "2024-01-04T03:20:30Z",
        },
        {
            " host ": "h.example",
            "Content-Type\t": "application/json",
            "X-Bce-Date": "2024-01-04T03:20:30Z",
        },
    ]
    signatures = {_export_request(credentials, headers=headers) for headers in spellings}
    assert len(signatures) == 1


def test_headers_to_sign_names_are_matched_case_insensitively(credentials: Credentials) -> None:
    lower = _export_request(credentials, headers_to_sign=["content-type", "host", "x-bce-date"])
    mixed = _export_request(credentials, headers_to_sign=["X-Bce-Date", " Host", "Content-Type"])
    assert mixed == lower


def test_signed_headers_field_is_lowercase_and_sorted(credentials: Credentials) -> None:
    authorization = _export_request(credentials, headers_to_sign=["X-Bce-Date", "Host"])
    assert parse_authorization(authorization).signed_headers == ("host", "x-bce-date")


def test_unlisted_x_bce_header_is_still_signed(credentials: Credentials) -> None:
    headers = {"Host": "h.example", "x-bce-date": "2024-01-04T03:20:30Z"}
    plain = _export_request(credentials, headers=headers, headers_to_sign=["host"])
    extra = _export_request(
        credentials, headers={**headers, "x-bce-request-id": "r1"}, headers_to_sign=["host"]
    )
    assert plain != extra


def test_unlisted_ordinary_header_is_not_signed(credentials: Credentials) -> None:
    headers = {"Host": "h.example", "Content-Type": "application/json"}
    plain = _export_request(credentials, headers=headers)
    extra = _export_request(credentials, headers={**headers, "User-Agent": "something"})
    assert plain == extra


@pytest.mark.parametrize("blank", ["", " ", "\t \t"])
def test_header_with_blank_value_is_left_out_of_canonical_headers(blank: str) -> None:
    headers = {"Host": "h.example", "Content-Md5": blank, "x-bce-meta-note": blank}
    assert canonical_headers(headers, ["host", "content-md5"]) == "host:h.example"


def test_verifier_mode_signs_only_listed_headers() -> None:
    headers = {"Host": "h.example", "x-bce-request-id": "r1"}
    assert canonical_headers(headers, ["host"], include_bce_headers=False) == "host:h.example"


def test_no_headers_to_sign_signs_default_set_and_leaves_field_empty(
    credentials: Credentials,
) -> None:
    authorization = _export_request(credentials, headers_to_sign=None)
    assert authorization.split("/")[4] == ""
    assert parse_authorization(authorization).signed_headers == ()


@pytest.mark.parametrize("expiration", [0, -1, True, 1800.0, "1800"])
def test_sign_rejects_bad_expiration(credentials: Credentials, expiration: Any) -> None:
    with pytest.raises(ValueError, match="expiration_seconds"):
        _export_request(credentials, expiration_seconds=expiration)


# --- credentials --------------------------------------------------------------------------


def test_credentials_repr_and_str_hide_the_secret(credentials: Credentials) -> None:
    for text in (repr(credentials), str(credentials), f"{credentials}", f"{[credentials]}"):
        assert credentials.secret_key not in text
        assert credentials.access_key not in text


def test_credentials_refuse_to_be_pickled(credentials: Credentials) -> None:
    with pytest.raises(TypeError, match="picklable"):
        pickle.dumps(credentials)


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [("", "sk"), ("ak", ""), ("   ", "sk"), ("ak", "  \n"), (None, "sk"), ("ak", 5)],
)
def test_empty_or_non_string_key_is_a_missing_credentials_error(
    access_key: Any, secret_key: Any
) -> None:
    with pytest.raises(MissingCredentialsError):
        Credentials(access_key, secret_key)


@pytest.mark.parametrize("access_key", [" AK", "AK\n", "A/K", "A K", "AK\0"])
def test_access_key_with_whitespace_slash_or_control_is_rejected(access_key: str) -> None:
    with pytest.raises(ConfigurationError, match="access_key"):
        Credentials(access_key, "secret")


def test_credentials_error_never_shows_the_secret() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials("A K-access", "the-secret-value")
    assert "the-secret-value" not in str(caught.value)


def test_from_env_reads_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIANFAN_ACCESS_KEY", "ak-from-env")
    monkeypatch.setenv("QIANFAN_SECRET_KEY", "sk-from-env")
    credentials = Credentials.from_env()
    assert (credentials.access_key, credentials.secret_key) == ("ak-from-env", "sk-from-env")


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({"QIANFAN_ACCESS_KEY": "ak"}, ["QIANFAN_SECRET_KEY"]),
        ({"QIANFAN_SECRET_KEY": "sk"}, ["QIANFAN_ACCESS_KEY"]),
        ({"QIANFAN_ACCESS_KEY": "ak", "QIANFAN_SECRET_KEY": "  "}, ["QIANFAN_SECRET_KEY"]),
        ({}, ["QIANFAN_ACCESS_KEY", "QIANFAN_SECRET_KEY"]),
    ],
)
def test_from_env_names_each_missing_variable(
    monkeypatch: pytest.MonkeyPatch, present: dict[str, str], missing: list[str]
) -> None:
    for name in ("QIANFAN_ACCESS_KEY", "QIANFAN_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(MissingCredentialsError) as caught:
        Credentials.from_env()
    message = str(caught.value)
    for name in ("QIANFAN_ACCESS_KEY", "QIANFAN_SECRET_KEY"):
        assert (name in message) == (name in missing)


def test_from_env_accepts_an_explicit_mapping() -> None:
    credentials = Credentials.from_env({"QIANFAN_ACCESS_KEY": "ak", "QIANFAN_SECRET_KEY": "sk"})
    assert credentials.access_key == "ak"


# --- Authorization parsing ----------------------------------------------------------------


def test_parse_authorization_round_trips(credentials: Credentials) -> None:
    authorization = _export_request(credentials, expiration_seconds=60)
    parts = parse_authorization(authorization)
    assert parts.access_key == credentials.access_key
    assert parts.timestamp == "2024-01-04T03:20:30Z"
    assert parts.expiration_seconds == 60
    assert parts.signed_headers == SIGNED
    assert parts.issued_at == datetime(2024, 1, 4, 3, 20, 30, tzinfo=UTC)
    rebuilt = f"{parts.prefix}/{';'.join(parts.signed_headers)}/{parts.signature}"
    assert rebuilt == authorization


_GOOD = "bce-auth-v1/ak/2024-01-04T03:20:30Z/1800/host/" + "a" * 64


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer token",
        _GOOD.replace("bce-auth-v1", "bce-auth-v2"),
        _GOOD.replace("/ak/", "//"),
        _GOOD.replace("2024-01-04T03:20:30Z", "2024-01-04 03:20:30"),
        _GOOD.replace("2024-01-04T03:20:30Z", "2024-01-04T03:20:30Z\n"),
        _GOOD.replace("2024-01-04T03:20:30Z", "2024-13-04T03:20:30Z"),
        _GOOD.replace("/1800/", "/0/"),
        _GOOD.replace("/1800/", "/-5/"),
        _GOOD.replace("/1800/", "/soon/"),
        _GOOD.replace("/1800/", "/١٨٠٠/"),
        _GOOD[:-1],
        _GOOD[:-1] + "A",
        _GOOD[:-1] + "g",
        _GOOD + "/extra",
        _GOOD.replace("/host/", "/"),
    ],
)
def test_parse_authorization_rejects_malformed_value(value: str) -> None:
    with pytest.raises(ValueError):
        parse_authorization(value)


def test_parse_authorization_accepts_empty_signed_headers() -> None:
    parts = parse_authorization(_GOOD.replace("/host/", "//"))
    assert parts == AuthorizationParts("ak", "2024-01-04T03:20:30Z", 1800, (), "a" * 64)


# --- properties ---------------------------------------------------------------------------

_NAMES = ["host", "content-type", "content-length", "x-bce-date", "x-bce-meta-a", "user-agent"]
_VALUES = st.text(min_size=1, max_size=20).filter(lambda v: bool(v.encode("utf-8").strip()))
_PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    headers = draw(st.dictionaries(st.sampled_from(_NAMES), _VALUES, min_size=1))
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT"])),
        "path": "/" + draw(st.text(max_size=20)),
        "query": draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
        "headers": headers,
        "timestamp": draw(st.integers(min_value=1, max_value=4_102_444_800)),
        "expiration_seconds": draw(st.integers(min_value=1, max_value=10**6)),
        "headers_to_sign": draw(
            st.lists(st.sampled_from(sorted(headers)), min_size=1, unique=True)
        ),
    }


@_PROPERTY_SETTINGS
@given(request=_requests())
def test_signed_value_always_parses(request: dict[str, Any]) -> None:
    credentials = Credentials("AKPROPERTY", "SKPROPERTY")
    parts = parse_authorization(sign(credentials, **request))
    assert parts.access_key == "AKPROPERTY"
    assert parts.expiration_seconds == request["expiration_seconds"]
    assert parts.signed_headers == tuple(sorted(request["headers_to_sign"]))


@_PROPERTY_SETTINGS
@given(request=_requests(), data=st.data())
def test_changing_a_signed_header_value_changes_the_signature(
    request: dict[str, Any], data: st.DataObject
) -> None:
    credentials = Credentials("AKPROPERTY", "SKPROPERTY")
    name = data.draw(st.sampled_from(request["headers_to_sign"]))
    new_value = data.draw(_VALUES)
    old_value = request["headers"][name]
    assume(new_value.encode("utf-8").strip() != old_value.encode("utf-8").strip())
    changed = {**request, "headers": {**request["headers"], name: new_value}}
    before = parse_authorization(sign(credentials, **request)).signature
    after = parse_authorization(sign(credentials, **changed)).signature
    assert before != after
