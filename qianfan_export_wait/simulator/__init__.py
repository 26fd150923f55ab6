"""A local fake of the Qianfan console API, for tests, demos and benchmarks.

::

    sim = Simulator(credentials, SimulatorConfig(seed=0, qps=10))
    sim.add_exports(1000, max_seconds=8.0, fail_ratio=0.1)
    async with sim.serve() as base_url:
        ...  # point ExportStatusClient(credentials, base_url=base_url) at it
    sim.stats.requests_by_outcome

It serves both generations of the export job's three calls (an evaluation's status,
creating its export, the export's status): V1 on ``/wenxinworkshop/modelrepo/...``, V2 on
``/v2/eval?Action=...`` (``SimulatorConfig.api`` picks them). ``add_evaluations`` adds
evaluations on a seeded timeline; a create call starts an export that follows one too,
and ``creates_by_evaluation()`` counts them.

It verifies every ``bce-auth-v1`` signature (query string included), answers like the
real platform (V1: HTTP 200 with ``error_code`` for limits and unknown ids, HTTP 401 with
``X-Bce-Error-Code`` for authentication; V2: ``{"requestId", "code", "message"}`` under
HTTP 400/401/403/404/429/500), and injects seeded faults. ``GET /_sim/stats`` (``?exports=1`` for
per-export records) reports what it saw.

Done exports serve their files (``storage.py``): a presigned ``downloadUrl`` on the
simulator itself for ``local`` exports, a signed BOS ``GetObject`` for ``storage`` ones,
with their own faults (``DownloadFaultRates``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .app import STATS_PATH, Simulator
    from .config import (
        API_CHOICES,
        DOWNLOAD_FAULT_KINDS,
        FAULT_KINDS,
        DownloadFaultRates,
        FaultRates,
        SimulatorConfig,
    )
    from .credentials import SIMULATOR_CREDENTIALS
    from .evaluations import (
        V1_EVALUATION_STATES,
        V2_EVALUATION_STATES,
        SimEvaluation,
        evaluation_id_from_str,
        evaluation_id_str_for,
    )
    from .exports import SimExport, export_id_from_str, export_id_str_for
    from .files import FileDigest, SimFile
    from .runner import run_simulator
    from .stats import CALLS, FILE_OUTCOMES, OUTCOMES, SimulatorStats
    from .verify import AuthFailure, verify_authorization

__all__ = [
    "API_CHOICES",
    "CALLS",
    "DOWNLOAD_FAULT_KINDS",
    "FAULT_KINDS",
    "FILE_OUTCOMES",
    "OUTCOMES",
    "SIMULATOR_CREDENTIALS",
    "STATS_PATH",
    "V1_EVALUATION_STATES",
    "V2_EVALUATION_STATES",
    "AuthFailure",
    "DownloadFaultRates",
    "FaultRates",
    "FileDigest",
    "SimEvaluation",
    "SimExport",
    "SimFile",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "evaluation_id_from_str",
    "evaluation_id_str_for",
    "export_id_from_str",
    "export_id_str_for",
    "run_simulator",
    "verify_authorization",
]

# Loaded on first use: the command line needs only the credentials, not aiohttp.web.
_HOMES: dict[str, str] = {
    "STATS_PATH": "app",
    "Simulator": "app",
    "API_CHOICES": "config",
    "DOWNLOAD_FAULT_KINDS": "config",
    "FAULT_KINDS": "config",
    "DownloadFaultRates": "config",
    "FaultRates": "config",
    "SimulatorConfig": "config",
    "SIMULATOR_CREDENTIALS": "credentials",
    "V1_EVALUATION_STATES": "evaluations",
    "V2_EVALUATION_STATES": "evaluations",
    "SimEvaluation": "evaluations",
    "evaluation_id_from_str": "evaluations",
    "evaluation_id_str_for": "evaluations",
    "SimExport": "exports",
    "export_id_from_str": "exports",
    "export_id_str_for": "exports",
    "FileDigest": "files",
    "SimFile": "files",
    "run_simulator": "runner",
    "CALLS": "stats",
    "FILE_OUTCOMES": "stats",
    "OUTCOMES": "stats",
    "SimulatorStats": "stats",
    "AuthFailure": "verify",
    "verify_authorization": "verify",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
