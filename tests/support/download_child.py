"""Run by test_download_soak.py in a child process: download exports 1..N into a folder.

Environment: QIANFAN_ACCESS_KEY, QIANFAN_SECRET_KEY, QIANFAN_CONSOLE_API_BASE_URL (the
simulator), DOWNLOAD_DEST, DOWNLOAD_COUNT.
"""

from __future__ import annotations

import asyncio
import os

from tenacity import wait_none

from qianfan_export_wait import ExportStatusClient
from qianfan_export_wait.download import Downloader


async def main() -> None:
    count = int(os.environ["DOWNLOAD_COUNT"])
    async with ExportStatusClient.from_env() as client:
        statuses = [await client.get_status(export_id) for export_id in range(1, count + 1)]
        async with Downloader(
            os.environ["DOWNLOAD_DEST"],
            credentials=client.credentials,
            refresh=client.get_status,
            bos_endpoint=client.base_url,
            max_concurrency=4,
            retry_wait=wait_none(),
        ) as downloader:
            await asyncio.gather(*(downloader.download(status) for status in statuses))


if __name__ == "__main__":
    asyncio.run(main())
