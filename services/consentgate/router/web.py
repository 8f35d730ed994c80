"""The router's HTTP endpoints (faust's aiohttp server; table views are off):

- ``/healthz``: 200 while the worker runs;
- ``/readyz``: 200 once the consent view is loaded for the assigned partitions, else 503;
- ``/metrics``: Prometheus text format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from consentgate.router.worker import RouterWorker

__all__ = ["add_web_views"]


def add_web_views(app: faust.App, worker: RouterWorker) -> None:
    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = worker.readiness.ready
        body = {
            "ready": ready,
            "consent_positions": {str(p): o for p, o in sorted(worker.readiness.positions.items())},
        }
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        gate = worker.router_app.gate
        for partition in worker.readiness.positions:
            lag = gate.tracker.lag(partition)
            if lag is not None:
                worker.metrics.consent_lag.labels(str(partition)).set(lag)
        return web.bytes(worker.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
