"""Generate ``bos_get_object_generated.json``: how Baidu's ``bce-python-sdk`` builds a BOS
``GetObject`` request, captured just before it reaches the socket.

Run it with a throwaway virtualenv that has ``bce-python-sdk`` (never a dependency of
this project)::

    python3 -m venv /tmp/venv-bce && /tmp/venv-bce/bin/pip install bce-python-sdk
    /tmp/venv-bce/bin/python tests/vectors/make_bos_vectors.py

Each vector is ``BosClient(config).get_object(bucket, key, range=...)`` with the
endpoint and protocol given, the clock fixed at ``timestamp``, and the request taken at
``baidubce.http.bce_http_client._send_http_request``: the host and port connected to,
the request target as sent, and every header but ``User-Agent``. The output is
reproducible (seeded).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import sys
from pathlib import Path

import baidubce
from baidubce import protocol, utils
from baidubce.auth import bce_v1_signer
from baidubce.auth.bce_credentials import BceCredentials
from baidubce.bce_client_configuration import BceClientConfiguration
from baidubce.http import bce_http_client
from baidubce.retry.retry_policy import NoRetryPolicy
from baidubce.services.bos.bos_client import BosClient

SEED = 20241130
OUTPUT = Path(__file__).with_name("bos_get_object_generated.json")
ENDPOINTS = [
    ("bj.bcebos.com", "https"),
    ("https://bj.bcebos.com", "https"),
    ("https://su.bcebos.com", "https"),
    ("http://gz.bcebos.com", "http"),
    ("https://modelrepo-test.bj.bcebos.com", "https"),
    ("https://files.cdn.bcebos.com", "https"),
    ("http://127.0.0.1:8421", "http"),
    ("http://localhost:9000", "http"),
]
KEYS = [
    "qianfan_modelrepo_offline/workspace/model_eval_result_export/cl_test23_305_1704338430470.csv",
    "a//b/c~d.zip",
    "dir/中文 文件+1.csv",
    "x y/%41%2F?#.csv",
    "ünïcödé/🚀.zip",
    "plain.csv",
]
BUCKETS = ["modelrepo-test", "qianfan-export-1"]


def main() -> None:
    rng = random.Random(SEED)
    captured: list[dict[str, object]] = []

    class Captured(Exception):
        pass

    def capture(conn, http_method, uri, headers, body, send_buf_size):  # type: ignore[no-untyped-def]
        captured.append(
            {
                "connect_host": str(conn.host),
                "connect_port": conn.port,
                "method": http_method.decode() if isinstance(http_method, bytes) else http_method,
                "target": uri.decode() if isinstance(uri, bytes) else uri,
                "headers": {
                    (k.decode() if isinstance(k, bytes) else k): (
                        v.decode() if isinstance(v, bytes) else str(v)
                    )
                    for k, v in headers.items()
                    if (k.decode() if isinstance(k, bytes) else k) != "User-Agent"
                },
            }
        )
        raise Captured

    bce_http_client._send_http_request = capture
    canonical_time = utils.get_canonical_time
    vectors = []
    for endpoint, scheme in ENDPOINTS:
        for key in KEYS:
            bucket = rng.choice(BUCKETS)
            if "modelrepo-test." in endpoint:
                bucket = "modelrepo-test"
            epoch = rng.randrange(1_600_000_000, 1_900_000_000)
            fixed = canonical_time(epoch)
            utils.get_canonical_time = lambda timestamp=0, fixed=fixed: fixed
            range_ = rng.choice([None, (0, 99), (1048576, 2097151)])
            access_key = "".join(rng.choice("abcdef0123456789") for _ in range(32))
            secret_key = "".join(rng.choice("abcdef0123456789") for _ in range(32))
            config = BceClientConfiguration(
                credentials=BceCredentials(access_key, secret_key),
                endpoint=endpoint,
                protocol=protocol.HTTPS if scheme == "https" else protocol.HTTP,
            )
            config.retry_policy = NoRetryPolicy()
            # The capture stops the request before any I/O, with an exception.
            with contextlib.suppress(Exception):
                BosClient(config).get_object(bucket, key, range=range_)
            request = captured.pop()
            vectors.append(
                {
                    "endpoint": endpoint,
                    "scheme": scheme,
                    "bucket": bucket,
                    "key": key,
                    "range": list(range_) if range_ else None,
                    "access_key": access_key,
                    "secret_key": secret_key,
                    "timestamp": fixed.decode(),
                    **request,
                }
            )
    document = {
        "generator": "tests/vectors/make_bos_vectors.py",
        "sdk": f"bce-python-sdk {baidubce.SDK_VERSION.decode()}",
        "python": sys.version.split()[0],
        "generated": datetime.date.today().isoformat(),
        "signer": bce_v1_signer.__name__,
        "vectors": vectors,
    }
    OUTPUT.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", "utf-8")
    print(f"wrote {len(vectors)} vectors to {OUTPUT}")


if __name__ == "__main__":
    main()
