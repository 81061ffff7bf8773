"""OWN INVENTION, not a baseline for ratios: a polling trigger built on this provider's hook.

Each trigger owns its own ``OxenAsyncHook`` (and so its own httpx client, SSL context and
connections) and reads its generation's status at a fixed interval until it is terminal.
Nobody ships this trigger: the comparisons in docs/performance.md are against the real peer,
the http provider's ``HttpEventTrigger`` (:mod:`benchmarks.http_peer`). This one is kept only
to show what one client per trigger costs (``wait_benchmark.py --strategies own``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_oxen.hooks.oxen import OxenAsyncHook


class BaselinePollingTrigger(BaseTrigger):
    def __init__(
        self, generation_id: str, oxen_conn_id: str = "oxen_default", poll_interval: float = 5.0
    ) -> None:
        super().__init__()
        self.generation_id = generation_id
        self.oxen_conn_id = oxen_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "benchmarks.baseline_trigger.BaselinePollingTrigger",
            {
                "generation_id": self.generation_id,
                "oxen_conn_id": self.oxen_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OxenAsyncHook(self.oxen_conn_id)
        try:
            while True:
                row = await hook.get_generation(self.generation_id)
                if row.status.is_terminal:
                    yield TriggerEvent(
                        {"status": row.status.value, "generations": [row.model_dump(mode="json")]}
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await hook.aclose()
