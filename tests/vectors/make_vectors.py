"""Generate ``bce_auth_v1_generated.json`` with Baidu's own signer.

Run it with a throwaway virtualenv that has ``bce-python-sdk`` (never a dependency of
this project)::

    python3 -m venv /tmp/venv-bce && /tmp/venv-bce/bin/pip install bce-python-sdk
    /tmp/venv-bce/bin/python tests/vectors/make_vectors.py

The output is reproducible (seeded) and has the format of
``shared/vectors/bce_auth_v1.json``. Each vector's ``path`` is the RAW path: our signer
URI-encodes it keeping ``/``, so Baidu's signer is handed the path already encoded the
way Baidu's client does it (``baidubce.utils.normalize_string(path, False)``).
Everything else goes to Baidu's signer as bytes, as ``baidubce.http.bce_http_client``
passes it. Timestamps go in as epoch ints and are written as ``YYYY-MM-DDTHH:MM:SSZ``.

Deliberately not generated (Baidu's signer and ours differ on purpose or the input is
outside our contract): ``headers_to_sign`` not lowercase and sorted (Baidu writes the
list as given, we write it normalised); lowercase methods (we upper-case); a query key
``authorization`` (the bce-auth-v1 spec leaves it out; Baidu's Python signer compares
``k.lower`` — the method, not its result — so it never does); epoch ``0`` (Baidu's
signer reads it as "now").
"""

from __future__ import annotations

import datetime
import json
import random
import string
import sys
from pathlib import Path

from baidubce import utils
from baidubce.auth import bce_v1_signer
from baidubce.auth.bce_credentials import BceCredentials

SEED = 20240104
OUTPUT = Path(__file__).with_name("bce_auth_v1_generated.json")

METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
EXPIRATIONS = [1800, 1800, 1800, 60, 300, 3600, 86400, 1]
ASCII_WORDS = ["v1", "bucket", "readme.txt", "a", "my-folder", "x_y", "t~ilde", "A.B", "9"]
UNICODE_WORDS = ["中文", "文件夹", "ünïcödé", "Ölçü", "🚀", "ação", "日本語テキスト", "Ελληνικά"]
RESERVED = [*"!*'();:@&=+$,/?#[] %", "%20", "%2F", "a b", "100%", "a+b", "q?x=1#f"]
HOSTS = [
    "qianfan.baidubce.com",
    "bj.bcebos.com",
    "127.0.0.1:8080",
    "localhost:49152",
    "[::1]:8443",
    "aip.baidubce.com",
]
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/json; charset=utf-8",
    "multipart/form-data; boundary=----x",
]
V2_ACTIONS = ["DescribeEvalResultExportTask", "DescribeEvalTask", "CreateEvalResultExportTask"]
KNOWN_NAMES = ["host", "content-type", "content-length", "content-md5", "x-bce-date"]


def canonical_time(epoch: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def token(self, alphabet: str, low: int, high: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(low, high)))

    def access_key(self) -> str:
        return self.token(string.ascii_lowercase + string.digits, 16, 32)

    def secret_key(self) -> str:
        if self.rng.random() < 0.1:
            return self.token(string.ascii_letters + string.digits + "+/=!中", 8, 40)
        return self.token(string.ascii_lowercase + string.digits, 32, 32)

    def epoch(self) -> int:
        return self.rng.randint(1, 4_102_444_800)

    def segment(self, pools: list[list[str]]) -> str:
        pool = self.rng.choice(pools)
        return "".join(self.rng.choice(pool) for _ in range(self.rng.randint(1, 3)))

    def path(self, pools: list[list[str]]) -> str:
        segments = [self.segment(pools) for _ in range(self.rng.randint(1, 5))]
        path = "/" + "/".join(segments)
        if self.rng.random() < 0.2:
            path += "/"
        return path

    def query(self, pools: list[list[str]], size: int, empty_values: float = 0.2) -> dict[str, str]:
        query: dict[str, str] = {}
        while len(query) < size:
            key = self.segment(pools)
            if key.lower() == "authorization":
                continue
            value = "" if self.rng.random() < empty_values else self.segment(pools)
            query[key] = value
        return query

    def base_headers(self, epoch: int) -> dict[str, str]:
        headers = {
            "Host": self.rng.choice(HOSTS),
            "Content-Type": self.rng.choice(CONTENT_TYPES),
            "x-bce-date": canonical_time(epoch),
        }
        if self.rng.random() < 0.4:
            headers["Content-Length"] = str(self.rng.randint(0, 10**7))
        if self.rng.random() < 0.2:
            headers["Content-Md5"] = self.token(string.ascii_letters + string.digits + "+/", 22, 22)
            headers["Content-Md5"] += "=="
        if self.rng.random() < 0.3:
            headers["User-Agent"] = "bce-sdk-python/0.9 test"
        return headers

    def headers_to_sign(self, headers: dict[str, str], extra: list[str] = ()) -> list[str]:
        present = sorted({name.strip().lower() for name in headers})
        candidates = sorted(set(present) | set(KNOWN_NAMES) | set(extra))
        chosen = {name for name in candidates if self.rng.random() < 0.6}
        chosen.add(self.rng.choice(present))
        return sorted(chosen)


def baidu_sign(vector: dict[str, object], epoch: int) -> str:
    """The Authorization value Baidu's signer computes for ``vector``."""

    def to_bytes(value: object) -> bytes:
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]

    headers_to_sign = vector["headers_to_sign"]
    result = bce_v1_signer.sign(
        BceCredentials(vector["access_key"], vector["secret_key"]),
        to_bytes(vector["method"]),
        utils.normalize_string(vector["path"], False),
        {to_bytes(k): to_bytes(v) for k, v in vector["headers"].items()},  # type: ignore[attr-defined]
        {to_bytes(k): to_bytes(v) for k, v in vector["query"].items()},  # type: ignore[attr-defined]
        epoch,
        vector["expiration_seconds"],
        None if headers_to_sign is None else [to_bytes(n) for n in headers_to_sign],  # type: ignore[attr-defined]
    )
    return result.decode("ascii")


def build(gen: Generator) -> list[dict[str, object]]:
    rng = gen.rng
    vectors: list[dict[str, object]] = []

    def add(
        note: str,
        *,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str],
        headers_to_sign: list[str] | None,
        epoch: int | None = None,
        method: str | None = None,
    ) -> None:
        epoch = gen.epoch() if epoch is None else epoch
        vector: dict[str, object] = {
            "note": note,
            "access_key": gen.access_key(),
            "secret_key": gen.secret_key(),
            "method": method or rng.choice(METHODS),
            "path": path,
            "query": query or {},
            "headers": headers,
            "timestamp": canonical_time(epoch),
            "expiration_seconds": rng.choice(EXPIRATIONS),
            "headers_to_sign": headers_to_sign,
        }
        vector["authorization"] = baidu_sign(vector, epoch)
        vectors.append(vector)

    ascii_pools = [ASCII_WORDS]
    unicode_pools = [UNICODE_WORDS, ASCII_WORDS]
    reserved_pools = [RESERVED, ASCII_WORDS]
    mixed_pools = [ASCII_WORDS, UNICODE_WORDS, RESERVED]

    for _ in range(40):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            "plain ASCII path and query",
            path=gen.path(ascii_pools),
            query=gen.query(ascii_pools, rng.randint(0, 4)),
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
        )
    for _ in range(40):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            "unicode path and query keys/values (UTF-8, %XX uppercase)",
            path=gen.path(unicode_pools),
            query=gen.query(unicode_pools, rng.randint(1, 4)),
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
        )
    for _ in range(50):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            "reserved characters !*'();:@&=+$,/?#[] space and % in path and query",
            path=gen.path(reserved_pools),
            query=gen.query(reserved_pools, rng.randint(1, 5)),
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
        )
    for _ in range(25):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            "query with empty values",
            path=gen.path(mixed_pools),
            query=gen.query(mixed_pools, rng.randint(1, 5), empty_values=0.7),
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
        )
    for _ in range(40):
        epoch = gen.epoch()
        spelled = {
            rng.choice([" Content-Type ", "CONTENT-TYPE", "content-type", "Content-type\t"]): (
                rng.choice(["  application/json  ", "\ttext/plain ", "application/json"])
            ),
            rng.choice(["HOST", " host", "Host ", "hOsT"]): rng.choice(HOSTS),
            rng.choice(["X-BCE-DATE", "X-Bce-Date", " x-bce-date ", "x-BCE-date"]): (
                " " + canonical_time(epoch) + " "
            ),
        }
        if rng.random() < 0.5:
            spelled[rng.choice(["Content-Length", " CONTENT-LENGTH"])] = f" {rng.randint(0, 999)}"
        add(
            "odd header-name case and spaces around names and values",
            path=gen.path(ascii_pools),
            headers=spelled,
            headers_to_sign=gen.headers_to_sign(spelled),
            epoch=epoch,
        )
    for _ in range(40):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(
                ["x-bce-request-id", "X-Bce-Meta-Owner", "x-bce-content-sha256", "X-BCE-ACL"]
            )
            headers[name] = gen.segment(mixed_pools)
        signed = [name for name in gen.headers_to_sign(headers) if not name.startswith("x-bce-")]
        add(
            "x-bce-* headers present but not in headers_to_sign (still canonical)",
            path=gen.path(ascii_pools),
            headers=headers,
            headers_to_sign=signed or ["host"],
            epoch=epoch,
        )
    for _ in range(30):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        headers["X-Bce-Meta-Note"] = gen.segment(unicode_pools + reserved_pools)
        if rng.random() < 0.5:
            headers["Content-Type"] = (
                headers["Content-Type"] + "; name=" + rng.choice(UNICODE_WORDS)
            )
        add(
            "unicode and reserved characters in header values",
            path=gen.path(ascii_pools),
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers, ["x-bce-meta-note"]),
            epoch=epoch,
        )
    for _ in range(40):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            "headers_to_sign null: default set (host, content-*) plus x-bce-*, empty field",
            path=gen.path(mixed_pools),
            query=gen.query(mixed_pools, rng.randint(0, 3)),
            headers=headers,
            headers_to_sign=None,
            epoch=epoch,
        )
    for _ in range(8):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            "headers_to_sign empty list: same as null",
            path=gen.path(ascii_pools),
            headers=headers,
            headers_to_sign=[],
            epoch=epoch,
        )
    for _ in range(25):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        absent = rng.choice(["content-md5", "x-bce-content-sha256", "range", "x-custom"])
        add(
            "headers_to_sign names a header that is absent",
            path=gen.path(ascii_pools),
            headers=headers,
            headers_to_sign=sorted(set(gen.headers_to_sign(headers)) | {absent}),
            epoch=epoch,
        )
    for _ in range(25):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        blank = rng.choice(["Content-Md5", "x-bce-meta-empty", "Content-Type", "X-Bce-Acl"])
        headers[blank] = rng.choice(["", " ", "\t", "  \t "])
        add(
            "a header whose value is empty after trimming is left out of the canonical headers",
            path=gen.path(ascii_pools),
            headers=headers,
            headers_to_sign=sorted(set(gen.headers_to_sign(headers)) | {blank.lower()}),
            epoch=epoch,
        )
    for _ in range(12):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        headers["host"] = rng.choice(HOSTS)
        add(
            "two header names differing only in case: both are canonical lines",
            path=gen.path(ascii_pools),
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
        )
    edge_paths = ["/", "", "//", "/a//b/", "/%", "/%25", "/ ", "/~", "/.", "/..", "/a/./b/../c"]
    for path in edge_paths:
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        add(
            f"edge path {path!r}",
            path=path,
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
        )
    for epoch in [1, 59, 86_399, 951_782_400, 2_147_483_647, 2_147_483_648, 253_402_300_799]:
        headers = gen.base_headers(epoch)
        add(
            f"edge timestamp epoch {epoch}",
            path="/wenxinworkshop/modelrepo/eval/result/export/info",
            headers=headers,
            headers_to_sign=["content-type", "host", "x-bce-date"],
            epoch=epoch,
            method="POST",
        )
    for _ in range(20):
        epoch = gen.epoch()
        headers = {
            "Host": rng.choice(HOSTS),
            "Content-Type": "application/json",
            "x-bce-date": canonical_time(epoch),
        }
        add(
            "the export status request as our client sends it",
            path="/wenxinworkshop/modelrepo/eval/result/export/info",
            headers=headers,
            headers_to_sign=["content-type", "host", "x-bce-date"],
            epoch=epoch,
            method="POST",
        )
    # Appended after every earlier vector, so the seeded stream above is unchanged.
    for _ in range(24):
        epoch = gen.epoch()
        headers = {
            "Host": rng.choice(HOSTS),
            "Content-Type": "application/json",
            "x-bce-date": canonical_time(epoch),
        }
        add(
            "V2 console call as our protocol sends it: POST /v2/eval?Action=...",
            path="/v2/eval",
            query={"Action": rng.choice(V2_ACTIONS)},
            headers=headers,
            headers_to_sign=["content-type", "host", "x-bce-date"],
            epoch=epoch,
            method="POST",
        )
    for _ in range(16):
        epoch = gen.epoch()
        headers = gen.base_headers(epoch)
        query = {"Action": rng.choice(V2_ACTIONS)}
        query.update(gen.query(mixed_pools, rng.randint(1, 3)))
        query[rng.choice(["action", "ACTION", "Version", "_", "a"])] = gen.segment(mixed_pools)
        add(
            "Action beside other keys: upper case sorts before lower case, keys encoded",
            path=rng.choice(["/v2/eval", "/v2/dataset", "/v2/finetuning"]),
            query=query,
            headers=headers,
            headers_to_sign=gen.headers_to_sign(headers),
            epoch=epoch,
            method="POST",
        )
    return vectors


def main() -> int:
    vectors = build(Generator(SEED))
    text = json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
