"""Hand-made, really signed requests to the simulator's V1 and V2 calls (the client does not
speak V2 yet), and a simulator on a clock the test moves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from fakes import FakeClock
from multidict import CIMultiDictProxy
from yarl import URL

from qianfan_export_wait.auth import Credentials, canonical_time, sign
from qianfan_export_wait.client import host_header
from qianfan_export_wait.simulator import Simulator, SimulatorConfig
from qianfan_export_wait.testing import generate_credentials

V1_EXPORT_STATUS = "/wenxinworkshop/modelrepo/eval/result/export/info"
V1_EVALUATION = "/wenxinworkshop/modelrepo/eval/detail"
V1_CREATE = "/wenxinworkshop/modelrepo/eval/result/export"
V2_EVAL = "/v2/eval"
SIGNED = ("content-type", "host", "x-bce-date")


@dataclass
class Reply:
    status: int
    payload: Any
    headers: CIMultiDictProxy[str]


@dataclass
class Running:
    """A simulator served on 127.0.0.1 with a session to talk to it."""

    simulator: Simulator
    base_url: str
    session: aiohttp.ClientSession
    clock: FakeClock

    @property
    def credentials(self) -> Credentials:
        return self.simulator.credentials

    async def post(
        self,
        path: str,
        body: object,
        *,
        action: str | None = None,
        signed_query: Mapping[str, str] | None = None,
        credentials: Credentials | None = None,
    ) -> Reply:
        """POST ``body`` as JSON to ``path`` (with ``?Action=action``), signed with
        ``credentials`` over ``signed_query`` (default: the query actually sent)."""
        query = {} if action is None else {"Action": action}
        headers = {
            "Host": host_header(URL(self.base_url)),
            "Content-Type": "application/json",
            "x-bce-date": canonical_time(None),
        }
        headers["Authorization"] = sign(
            credentials or self.credentials,
            method="POST",
            path=path,
            query=query if signed_query is None else signed_query,
            headers=headers,
            timestamp=headers["x-bce-date"],
            headers_to_sign=SIGNED,
        )
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(
            self.base_url + path, params=query, data=data, headers=headers
        ) as response:
            raw = await response.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            return Reply(response.status, payload, response.headers)

    async def v1_evaluation(self, evaluation_id: object) -> Reply:
        return await self.post(V1_EVALUATION, {"id": evaluation_id})

    async def v2_evaluation(self, task_id: object) -> Reply:
        return await self.post(V2_EVAL, {"taskId": task_id}, action="DescribeEvalTask")

    async def v1_export(self, export_id: object) -> Reply:
        return await self.post(V1_EXPORT_STATUS, {"exportID": export_id})

    async def v2_export(self, task_id: object) -> Reply:
        return await self.post(V2_EVAL, {"taskId": task_id}, action="DescribeEvalResultExportTask")

    async def v1_create(self, evaluation_id: object, **fields: object) -> Reply:
        body: dict[str, object] = {
            "id": evaluation_id,
            "exportType": "local",
            "exportOpt": "total",
            "exportContent": ["prompt", "prediction", "completion", "metrics"],
        }
        body.update(fields)
        return await self.post(V1_CREATE, body)

    async def v2_create(self, evaluation_id: object, **fields: object) -> Reply:
        body: dict[str, object] = {
            "evalId": evaluation_id,
            "storageType": "sysStorage",
            "exportContent": ["prompt", "prediction", "completion", "metrics", "system"],
        }
        body.update(fields)
        return await self.post(V2_EVAL, body, action="CreateEvalResultExportTask")


@asynccontextmanager
async def running_simulator(**config: Any) -> AsyncIterator[Running]:
    """A simulator on a ``FakeClock`` (its wall clock stays real, for signatures)."""
    clock = FakeClock()
    simulator = Simulator(generate_credentials(), SimulatorConfig(**config), clock=clock)
    async with simulator.serve() as base_url, aiohttp.ClientSession() as session:
        yield Running(simulator, base_url, session, clock)
