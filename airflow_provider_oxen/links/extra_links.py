"""Extra links: "open the thing this task made", for the generate, store and review tasks.

Airflow 3 stores a declared link's URL in XCom when the task finishes, so a signed URL would be
stored and then expire: stored links are unsigned (AWS console pages) or ``""``, and the
``...LiveLink`` subclasses, registered by the provider's plugin under the same names, sign a
fresh URL each time the api-server is asked. What they read, the operators push when they
start (``persist``, under :data:`LINK_DATA_KEY`, nothing secret). See ``docs/links.md``.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink

from airflow_provider_oxen.results import generation_ids

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


log = logging.getLogger(__name__)

#: XCom key of the (non-secret) data the links of one task instance read.
LINK_DATA_KEY = "oxen_link_data"
#: The Oxen connection id a generate task pushes no link data for (``OxenHook.default_conn_name``).
DEFAULT_OXEN_CONN_ID = "oxen_default"
#: Lifetime of a presigned S3 URL handed out by a live link, in seconds.
PRESIGN_EXPIRES_IN = 900
#: Seconds a live link waits for Oxen (no retries: the api-server is answering a page load).
OXEN_LINK_TIMEOUT = 5.0
_S3_SCHEME = "s3://"

#: Reads one XCom of a task instance: ``read(ti_key, key)``.
XComReader = Callable[["TaskInstanceKey", str], Any]


def _worker_xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    """An XCom of this task instance, read on the worker (where stored links are computed)."""
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_value(ti_key=ti_key, key=key)


def _db_xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    """An XCom of this task instance, read from the metadata DB (in the api-server).

    Plain JSON only, like Airflow's own ``XComOperatorLink``: nothing is instantiated from
    what a task stored.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    if row is None:
        return None
    value = row[0]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _persist(context: Context, operator: BaseOperator, data: Callable[[], Mapping[str, Any]]) -> None:
    """Push ``data()`` under :data:`LINK_DATA_KEY`; a link is never worth failing the task for."""
    if not getattr(operator, "do_xcom_push", True):
        return
    ti = context.get("ti")
    if ti is None:
        return
    try:
        ti.xcom_push(key=LINK_DATA_KEY, value=dict(data()))
    except Exception as exc:
        log.warning("Could not store the data of this task's extra links: %s", type(exc).__name__)


def split_s3_uri(uri: Any) -> tuple[str, str] | None:
    """``s3://bucket/key`` → ``(bucket, key)``; None for anything else (or an empty key)."""
    if not isinstance(uri, str) or not uri.startswith(_S3_SCHEME):
        return None
    bucket, _, key = uri[len(_S3_SCHEME) :].partition("/")
    return (bucket, key) if bucket and key else None


def _aws_domain(region: str | None) -> str:
    if region and region.startswith("cn-"):
        return "amazonaws.cn"
    if region and region.startswith("us-gov-"):
        return "amazonaws-us-gov.com"
    return "aws.amazon.com"


def _region(aws_conn_id: str | None) -> str | None:
    """The connection's region, when it names one (read from the connection: no AWS call)."""
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=aws_conn_id).conn_config.region_name
    except Exception as exc:
        log.debug("No region for the S3 console link: %s", type(exc).__name__)
        return None


def s3_console_folder_url(bucket: str, prefix: str, region: str | None = None) -> str:
    """AWS console page listing ``prefix/`` in ``bucket`` (the whole bucket for ``""``)."""
    query = {"region": region} if region else {}
    if prefix:
        query["prefix"] = prefix.rstrip("/") + "/"
    url = f"https://console.{_aws_domain(region)}/s3/buckets/{quote(bucket, safe='')}"
    return f"{url}?{urlencode(query)}" if query else url


def s3_console_object_url(bucket: str, key: str, region: str | None = None) -> str:
    """AWS console page of one object (metadata, and its own "Open" button)."""
    query = {"region": region} if region else {}
    query["prefix"] = key
    return f"https://console.{_aws_domain(region)}/s3/object/{quote(bucket, safe='')}?{urlencode(query)}"


def presign_s3_uri(aws_conn_id: str | None, uri: Any, expires_in: int = PRESIGN_EXPIRES_IN) -> str:
    """A GET URL for ``s3://bucket/key``, signed now and valid for ``expires_in`` seconds ("" if none)."""
    parts = split_s3_uri(uri)
    if parts is None:
        return ""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    bucket, key = parts
    url = S3Hook(aws_conn_id=aws_conn_id).generate_presigned_url(
        "get_object", params={"Bucket": bucket, "Key": key}, expires_in=int(expires_in)
    )
    return url or ""


class _OxenLink(BaseOperatorLink):
    """Common behaviour: a link never raises (a broken link must not break the page)."""

    name: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        try:
            return self.url(operator, ti_key) or ""
        except Exception as exc:
            # The exception type only: messages may quote URLs, and URLs here may be signed.
            log.warning("Link %r of %s is unavailable: %s", self.name, ti_key, type(exc).__name__)
            return ""

    def url(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
        """The link's URL ("" when there is none); may raise: :meth:`get_link` turns that into ""."""
        raise NotImplementedError


class _LiveLink(_OxenLink):
    """Mixin of the links the api-server computes when asked (registered by the provider's plugin).

    Airflow matches a plugin's link to a task by the operator class (module and name) and
    prefers it to the operator's stored link of the same name.
    """

    #: (module, class name) of the operators whose stored link this one replaces.
    _operator_paths: ClassVar[tuple[tuple[str, str], ...]] = ()

    @property
    def operators(self) -> list[type[BaseOperator]]:  # type: ignore[override]
        """The operators this link belongs to, imported only when Airflow asks."""
        found = []
        for module, name in self._operator_paths:
            try:
                found.append(getattr(importlib.import_module(module), name))
            except Exception as exc:  # e.g. the amazon extra is not installed
                log.debug("Link %r: %s.%s is unavailable: %s", self.name, module, name, type(exc).__name__)
        return found


class OxenImageLink(_OxenLink):
    """ "Oxen image": the task's (first) generated image, as Oxen serves it.

    Oxen serves a result only through a signed, expiring URL, so there is nothing to store:
    this stored link is empty, and :class:`OxenImageLiveLink` (the plugin) asks Oxen for a
    fresh URL each time the link is shown.
    """

    name = "Oxen image"

    @classmethod
    def persist(cls, context: Context, operator: BaseOperator) -> None:
        """Push what the live link needs: the Oxen connection id (the ids are the return value).

        Nothing for the default connection, which the live link assumes when there is no data:
        an XCom push is a round trip on the worker slot of every generate task.
        """
        conn_id = getattr(operator, "oxen_conn_id", None)
        if conn_id == DEFAULT_OXEN_CONN_ID:
            return
        _persist(context, operator, lambda: {"oxen_conn_id": conn_id})

    def url(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
        return ""


class OxenImageLiveLink(_LiveLink, OxenImageLink):
    """ "Oxen image", computed in the api-server: a fresh result URL from ``GET /api/ai/queue/{id}``.

    For a task that made several images, the first one (each mapped task instance has its
    own link; the store task's "S3 folder" shows them all). The URL is signed by Oxen and
    expires: it is fetched when the link is shown, never stored. One request to Oxen, at most
    :data:`OXEN_LINK_TIMEOUT` seconds, no retries.
    """

    # Airflow matches a plugin's link by the exact class: each generate operator is named.
    _operator_paths = tuple(
        ("airflow_provider_oxen.operators.generate", name)
        for name in ("OxenGenerateOperator", "OxenGenerateImageOperator", "OxenGenerateVideoOperator")
    )

    def url(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
        ids = generation_ids(_db_xcom(ti_key, "return_value"))
        if not ids:
            return ""
        conn_id = _mapping(_db_xcom(ti_key, LINK_DATA_KEY)).get("oxen_conn_id", DEFAULT_OXEN_CONN_ID)
        if not conn_id:
            return ""
        from airflow_provider_oxen.hooks.oxen import OxenHook

        # No retries: the api-server is answering a page load.
        with OxenHook(str(conn_id), timeout=OXEN_LINK_TIMEOUT, max_retries=0) as hook:
            return hook.get_generation(ids[0]).result_url or ""


class OxenS3FolderLink(_OxenLink):
    """ "S3 folder": the AWS console listing the batch's prefix (unsigned: stored as is)."""

    name = "S3 folder"

    @classmethod
    def persist(cls, context: Context, operator: BaseOperator) -> None:
        """Push the store task's AWS connection id, bucket and (normalised) prefix."""
        from airflow_provider_oxen.transfers.keys import normalise_prefix

        _persist(
            context,
            operator,
            lambda: {
                "aws_conn_id": getattr(operator, "aws_conn_id", None),
                "bucket": str(getattr(operator, "bucket", "") or "").strip(),
                "prefix": normalise_prefix(str(getattr(operator, "prefix", "") or "")),
            },
        )

    def url(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
        data = _mapping(_worker_xcom(ti_key, LINK_DATA_KEY))
        bucket = data.get("bucket")
        if not isinstance(bucket, str) or not bucket:
            return ""
        return s3_console_folder_url(bucket, str(data.get("prefix") or ""), _region(data.get("aws_conn_id")))


class _S3ObjectLink(_OxenLink):
    """One stored object. Stored link: its AWS console page (unsigned)."""

    def object_uri(self, data: Mapping[str, Any], read: XComReader, ti_key: TaskInstanceKey) -> Any:
        """The object's ``s3://`` URI, from the link data or another XCom of the task."""
        raise NotImplementedError

    def url(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
        data = _mapping(_worker_xcom(ti_key, LINK_DATA_KEY))
        parts = split_s3_uri(self.object_uri(data, _worker_xcom, ti_key))
        if parts is None:
            return ""
        return s3_console_object_url(*parts, region=_region(data.get("aws_conn_id")))


class _LiveS3ObjectLink(_LiveLink, _S3ObjectLink):
    """One stored object, computed in the api-server: a GET URL presigned for a short while."""

    def url(self, operator: BaseOperator, ti_key: TaskInstanceKey) -> str:
        data = _mapping(_db_xcom(ti_key, LINK_DATA_KEY))
        if "aws_conn_id" not in data:  # None is a valid conn id (boto's own credential chain)
            return ""
        return presign_s3_uri(data["aws_conn_id"], self.object_uri(data, _db_xcom, ti_key))


class OxenManifestLink(_S3ObjectLink):
    """ "Manifest": the batch's manifest (the store task's ``manifest_uri`` XCom).

    Stored: its AWS console page. :class:`OxenManifestLiveLink` (the plugin) shows a
    presigned download URL instead.
    """

    name = "Manifest"

    def object_uri(self, data: Mapping[str, Any], read: XComReader, ti_key: TaskInstanceKey) -> Any:
        return read(ti_key, "manifest_uri")


class OxenManifestLiveLink(_LiveS3ObjectLink, OxenManifestLink):
    """ "Manifest", computed in the api-server: a GET URL presigned for :data:`PRESIGN_EXPIRES_IN` s."""

    _operator_paths = (("airflow_provider_oxen.transfers.s3", "OxenGenerationToS3Operator"),)


class OxenContactSheetLink(_S3ObjectLink):
    """ "Contact sheet": the contact sheet of the batch under review.

    Stored: its AWS console page. :class:`OxenContactSheetLiveLink` (the plugin) shows a
    presigned URL of the PNG instead.
    """

    name = "Contact sheet"

    @classmethod
    def persist(cls, context: Context, operator: BaseOperator) -> None:
        """Push the review task's AWS connection id and (rendered) ``contact_sheet_uri``."""
        uri = getattr(operator, "contact_sheet_uri", None)
        _persist(
            context,
            operator,
            lambda: {
                "aws_conn_id": getattr(operator, "aws_conn_id", None),
                "contact_sheet_uri": uri if split_s3_uri(uri) else None,
            },
        )

    def object_uri(self, data: Mapping[str, Any], read: XComReader, ti_key: TaskInstanceKey) -> Any:
        return data.get("contact_sheet_uri")


class OxenContactSheetLiveLink(_LiveS3ObjectLink, OxenContactSheetLink):
    """ "Contact sheet", computed in the api-server: a GET URL presigned for :data:`PRESIGN_EXPIRES_IN` s."""

    _operator_paths = (("airflow_provider_oxen.operators.review", "OxenImageReviewOperator"),)


#: The links the provider's plugin registers (computed by the api-server when shown).
LIVE_LINKS: tuple[type[_LiveLink], ...] = (OxenImageLiveLink, OxenManifestLiveLink, OxenContactSheetLiveLink)
