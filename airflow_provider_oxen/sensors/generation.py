"""OxenGenerationSensor: waits for generations that something else enqueued."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_oxen.exceptions import OxenError
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.results import build_result, generation_ids, generations_from_payload, wait_payload
from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class OxenGenerationSensor(BaseSensorOperator):
    """Wait until Oxen generations are finished and return their results.

    :param generation_ids: one id or a list (templated; e.g. an upstream task's XCom).
    :param oxen_conn_id: connection of type ``oxen``.
    :param deferrable: wait in the triggerer (default True here, as the sensor exists to wait).
    :param poll_interval: seconds between status checks (``poke_interval`` when not deferrable).

    ``timeout`` and ``soft_fail`` behave as for every sensor: at the timeout the task fails
    (or is skipped with ``soft_fail``); a failed or cancelled generation fails the task (or
    skips it with ``soft_fail``). Returns the same result dicts as the operator.
    """

    template_fields: Sequence[str] = ("generation_ids",)

    def __init__(
        self,
        *,
        generation_ids: str | list[str],
        oxen_conn_id: str = OxenHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.generation_ids = generation_ids
        self.oxen_conn_id = oxen_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def _ids(self) -> list[str]:
        ids = generation_ids(self.generation_ids)  # the operator's results as well as plain ids
        if not ids:
            raise ValueError("generation_ids is empty: nothing to wait for")
        return ids

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        ids = self._ids()
        self.defer(
            trigger=OxenGenerationTrigger(
                generation_ids=ids,
                oxen_conn_id=self.oxen_conn_id,
                poll_interval=self.poll_interval,
                deadline=time.time() + float(self.timeout),
                # The generations belong to whoever enqueued them: a sensor does not cancel.
                cancel_on_timeout=False,
                cancel_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) + timedelta(minutes=5),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        ids = self._ids()
        with OxenHook(self.oxen_conn_id) as hook:
            rows = {i: hook.get_generation(i) for i in ids}
        if not all(row.status.is_terminal for row in rows.values()):
            pending = [i for i, row in rows.items() if not row.status.is_terminal]
            self.log.info("%d of %d generation(s) still pending: %s", len(pending), len(ids), pending)
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._results(wait_payload(ids, rows)))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self._results(event)

    def _results(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            rows = generations_from_payload(payload)
            with OxenHook(self.oxen_conn_id) as hook:
                rows = hook.complete_rows(rows)
        except OxenError as exc:
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping due to soft_fail: {exc}") from exc
            raise
        return [build_result(row) for row in rows]
