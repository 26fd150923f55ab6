"""The pure decisions of a download: names, sources, answers, verification."""

from __future__ import annotations

import base64
import hashlib

import pytest
from statuses import make_status
from yarl import URL

from qianfan_export_wait.auth import Credentials, sign, uri_encode
from qianfan_export_wait.bos import BosObject
from qianfan_export_wait.download_rules import (
    MAX_NAME_BYTES,
    OBJECT_CHANGED,
    Expected,
    LocalLink,
    check_received,
    export_dir_name,
    file_name_for,
    link_expires_at,
    plan_body,
    safe_name,
    source_for,
    validate_download_url,
)
from qianfan_export_wait.errors import (
    ChecksumError,
    DownloadSourceError,
    LinkExpiredError,
    TransferError,
)

MD5 = hashlib.md5(b"hello", usedforsecurity=False)
ETAG = f'"{MD5.hexdigest()}"'


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.csv", "report.csv"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "fallback"),
        (".hidden.zip", "hidden.zip"),
        ("a/b\\c:d.csv", "a_b_c_d.csv"),
        ("bell\x07and\nnewline\u202e.csv", "bellandnewline.csv"),
        ("CON.csv", "_CON.csv"),
        ("", "fallback"),
        ("中文 结果.csv", "中文 结果.csv"),
    ],
)
def test_safe_name_keeps_one_harmless_name(given: str, expected: str) -> None:
    assert safe_name(given, fallback="fallback") == expected


def test_safe_name_bounds_the_length_and_keeps_the_extension() -> None:
    name = safe_name("结" * 200 + ".zip", fallback="x")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name.endswith(".zip")


def test_export_folder_of_a_hostile_string_id_stays_one_level_down() -> None:
    assert export_dir_name("../../x") == "_.._x"
    assert export_dir_name(96) == "96"


def test_local_export_is_fetched_from_its_download_url() -> None:
    status = make_status(7, url="https://bj.bcebos.com/v1/b/dir/res%20ult.csv?authorization=x")
    source = source_for(status)  # type: ignore[arg-type]
    assert isinstance(source, LocalLink)
    assert file_name_for(source, 7) == "res ult.csv"


def test_storage_export_is_fetched_from_its_bucket_and_key() -> None:
    status = make_status(7, exportType="storage", volumeId="bkt", exportPath="a/b/x.zip")
    source = source_for(status)  # type: ignore[arg-type]
    assert source == BosObject("bkt", "a/b/x.zip")
    assert file_name_for(source, 7) == "x.zip"


def test_export_that_is_not_done_has_no_file() -> None:
    with pytest.raises(DownloadSourceError, match="not Done"):
        source_for(make_status(7, "Uploading", url="https://h/x"))  # type: ignore[arg-type]


def test_local_export_without_download_url_is_a_source_error() -> None:
    with pytest.raises(DownloadSourceError, match="downloadUrl"):
        source_for(make_status(7, url=""))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x.csv", "https://user:pw@example.com/x.csv", "ftp://h/x", "x.csv"],
)
def test_unsafe_download_url_is_refused(url: str) -> None:
    with pytest.raises(DownloadSourceError):
        validate_download_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://[::1]/x", "https://h/x"])
def test_https_or_loopback_http_download_url_is_accepted(url: str) -> None:
    assert validate_download_url(url).raw_host


def test_presigned_link_expiry_is_read_from_its_authorization() -> None:
    auth = sign(
        Credentials("ak", "sk"),
        method="GET",
        path="/x",
        headers={"host": "h"},
        timestamp=1_700_000_000,
        expiration_seconds=60,
        headers_to_sign=("host",),
    )
    url = URL(f"https://h/x?authorization={uri_encode(auth)}", encoded=True)
    assert link_expires_at(url) == 1_700_000_060


def test_link_without_signature_has_no_known_expiry() -> None:
    assert link_expires_at(URL("https://h/x?token=abc")) is None


def test_full_answer_expects_content_length_and_content_md5() -> None:
    headers = {
        "Content-Length": "5",
        "ETag": ETAG,
        "Content-MD5": base64.b64encode(MD5.digest()).decode(),
    }
    plan = plan_body(200, headers, 0, is_link=True)
    assert plan.offset == 0
    assert plan.expected == Expected(5, ETAG, MD5.digest(), None)


def test_full_answer_to_a_range_request_starts_again_from_zero() -> None:
    plan = plan_body(200, {"Content-Length": "5"}, 3, is_link=True)
    assert plan.offset == 0


def test_partial_answer_must_start_where_asked() -> None:
    with pytest.raises(TransferError, match="Content-Range"):
        plan_body(206, {"Content-Range": "bytes 0-4/5"}, 3, is_link=True)


def test_partial_answer_keeps_what_the_first_answer_said_of_the_file() -> None:
    known = Expected(5, ETAG, MD5.digest(), None)
    plan = plan_body(
        206, {"Content-Range": "bytes 3-4/5", "ETag": ETAG}, 3, is_link=True, known=known
    )
    assert (plan.offset, plan.expected) == (3, known)


@pytest.mark.parametrize("status", [412, 416])
def test_changed_object_restarts_the_transfer(status: int) -> None:
    with pytest.raises(TransferError) as caught:
        plan_body(status, {}, 3, is_link=True)
    assert caught.value.code == OBJECT_CHANGED


def test_etag_that_changed_mid_transfer_restarts_it() -> None:
    known = Expected(5, ETAG, None, None)
    with pytest.raises(TransferError) as caught:
        plan_body(
            206, {"Content-Range": "bytes 3-4/5", "ETag": '"other"'}, 3, is_link=True, known=known
        )
    assert caught.value.code == OBJECT_CHANGED


def test_forbidden_link_asks_for_a_fresh_one() -> None:
    with pytest.raises(LinkExpiredError):
        plan_body(403, {}, 0, is_link=True)


def test_forbidden_bos_request_is_not_a_link_to_refresh() -> None:
    with pytest.raises(DownloadSourceError, match="BOS refused"):
        plan_body(403, {}, 0, is_link=False)


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_trouble_is_a_transfer_error(status: int) -> None:
    with pytest.raises(TransferError):
        plan_body(status, {}, 0, is_link=True)


@pytest.mark.parametrize("status", [404, 302, 400])
def test_missing_or_redirected_file_is_a_source_error(status: int) -> None:
    with pytest.raises(DownloadSourceError):
        plan_body(status, {}, 0, is_link=True)


def test_multipart_etag_is_not_taken_for_an_md5() -> None:
    plan = plan_body(200, {"ETag": '"abc-3"', "Content-Length": "5"}, 0, is_link=True)
    assert plan.expected.md5 is None


def test_bytes_matching_size_and_md5_verify() -> None:
    expected = Expected(5, ETAG, MD5.digest(), None)
    assert check_received(expected, 5, MD5.digest(), hashlib.sha256(b"hello").hexdigest()) is None


def test_wrong_md5_is_a_checksum_error() -> None:
    expected = Expected(5, ETAG, MD5.digest(), None)
    assert isinstance(check_received(expected, 5, b"\0" * 16, "0" * 64), ChecksumError)


def test_wrong_size_is_a_checksum_error() -> None:
    assert isinstance(check_received(Expected(6, None, None, None), 5, b"", ""), ChecksumError)


def test_wrong_sha256_header_is_a_checksum_error() -> None:
    expected = Expected(5, None, None, "f" * 64)
    assert isinstance(check_received(expected, 5, MD5.digest(), "0" * 64), ChecksumError)
