"""OxenGenerationToS3Operator: store generated images and video clips in S3, checked, with a manifest.

Per file: HEAD the key, download into a spool while hashing (or re-read our own stored copy on a
re-run), mark, check, thumbnail, upload unless the same bytes are there. Then per batch: a
contact sheet, a manifest, XComs and asset events. Every key is checked before the first upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any, cast

from airflow.sdk import Asset, BaseOperator

from airflow_provider_oxen import __version__
from airflow_provider_oxen.exceptions import (
    OxenCheckFailedError,
    OxenError,
    OxenKeyConflictError,
    OxenKeyError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.links.extra_links import OxenManifestLink, OxenS3FolderLink
from airflow_provider_oxen.media.checks import (
    MIME_TYPES,
    CheckSettings,
    ExpectedImage,
    ImageCheck,
    check_failed,
    decode_image,
    evaluate,
    identify_mime_type,
)
from airflow_provider_oxen.media.contact_sheet import (
    COLUMNS,
    THUMB,
    SheetItem,
    make_contact_sheet,
    make_thumbnail,
)
from airflow_provider_oxen.media.video import (
    POSTER_CONTENT_TYPE,
    VIDEO_MIME_TYPES,
    ExpectedVideo,
    VideoCheck,
    decode_video,
    evaluate_video,
    is_video,
    load_av,
    poster_jpeg,
    poster_key,
)
from airflow_provider_oxen.provenance.c2pa import SigningCredentials, sign
from airflow_provider_oxen.provenance.facts import Ingredient, Provenance
from airflow_provider_oxen.provenance.xmp import mark, mark_file
from airflow_provider_oxen.results import build_result
from airflow_provider_oxen.transfers.batch import check_result, flatten_results
from airflow_provider_oxen.transfers.fetch import Fetched, fetch_result
from airflow_provider_oxen.transfers.keys import (
    BATCH_KEY_FIELDS,
    IMAGE_KEY_FIELDS,
    check_bucket,
    check_key,
    key_value,
    normalise_prefix,
    render_key,
)
from airflow_provider_oxen.transfers.manifest import (
    POSTER_FIELDS,
    build_manifest,
    image_record,
    manifest_bytes,
)
from airflow_provider_oxen.transfers.spool import DEFAULT_SPOOL_BYTES, Spool
from airflow_provider_oxen.transfers.store import (
    GENERATION_ID_META,
    SHA256_META,
    ExistingObject,
    S3ObjectStore,
    WriteAction,
    plan_write,
    s3_metadata,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from PIL import Image

DEFAULT_KEY_TEMPLATE = "{prefix}/{generation_id}.{ext}"
DEFAULT_MANIFEST_KEY = "{prefix}/manifest-{run_id}.json"
DEFAULT_CONTACT_SHEET_KEY = "{prefix}/contact-sheet-{run_id}.png"
RUN_ID_META = "run-id"
# Manifests and contact sheets carry their kind: one written by this operator (any run) may be
# rewritten at its key, while an unrelated object there is protected unless ``replace=True``.
KIND_META = "kind"
MANIFEST_KIND = "oxen-manifest"
CONTACT_SHEET_KIND = "oxen-contact-sheet"
# A clip's poster frame: its own kind, the clip's generation-id, and the sha256 of the clip it shows.
POSTER_KIND = "oxen-poster"
SOURCE_SHA256_META = "source-sha256"
# Marking changes the bytes: what Oxen returned keeps its own hash beside the stored one.
OXEN_SHA256_META = "oxen-sha256"
# "marked", or why not: a re-run reuses a stored file only if it was made the way this one would be.
PROVENANCE_META = "provenance"
MARKED = "marked"
SIGNED = "signed"
_UNMARKED = {
    "off": "marking is off (mark_provenance=False)",
    "unmarkable": "unknown or damaged container (XMP is written into PNG, JPEG, WebP, MP4 and MOV)",
    "unsigned": "marked, but not signed: C2PA cannot carry a manifest in this file type",
}
# What the record says of each stored state (its reason, if any, is in _UNMARKED).
_RECORD_STATES = {SIGNED: SIGNED, MARKED: MARKED, "unsigned": MARKED}
# A source image read to be a C2PA ingredient (edit inputs are images of a few MB).
_SOURCE_MAX_BYTES = 64 * 1024 * 1024
SOFTWARE_AGENT = f"airflow-provider-oxen {__version__}"
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4", "mov": "mov", "webm": "webm"}
_UNKNOWN_EXTENSION = "bin"


@dataclass(frozen=True)
class _Planned:
    """One image or clip with its key(s), rendered and checked before anything is uploaded."""

    index: int
    result: dict[str, Any]
    key: str
    expected: ExpectedImage | ExpectedVideo
    prefix: str
    # Set for a video clip: where its poster frame goes.
    poster_key: str | None = None
    # Set for an image of unknown format: the key's values, to name it once its bytes are seen.
    values: Mapping[str, Any] | None = None

    @property
    def video(self) -> bool:
        return self.poster_key is not None


def _poster_fields(
    store: S3ObjectStore, key: str, sha256: str, size: int, action: WriteAction
) -> dict[str, Any]:
    """A clip's poster frame as its record names it (:data:`POSTER_FIELDS` and ``poster_action``)."""
    return {
        "poster_s3_key": key,
        "poster_s3_uri": store.uri(key),
        "poster_sha256": sha256,
        "poster_size_bytes": size,
        "poster_action": action.value,
    }


_NO_POSTER = dict.fromkeys((*POSTER_FIELDS, "poster_action"))


@dataclass
class _Analysis:
    """What looking at a file's bytes gave: the verdict, a thumbnail, its real type, a poster frame."""

    check: ImageCheck | VideoCheck | None = None
    thumbnail: Image.Image | None = None
    mime_type: str | None = None
    poster: bytes | None = None
    duration_seconds: float | None = None


def _extension(fmt: str | None) -> str:
    if fmt is None:
        return _UNKNOWN_EXTENSION
    return _EXTENSIONS.get(fmt, key_value(fmt))


class OxenGenerationToS3Operator(BaseOperator):
    """Copy Oxen results (images, video clips) into S3, with checks, a contact sheet and a manifest per batch.

    Files are streamed, marked as AI-generated (XMP inside the file), and skipped on a re-run only
    when the stored object is proven to hold the same bytes; a clip gets a poster frame at
    ``<key>.poster.jpg``. See ``docs/transfers.md`` and ``docs/provenance.md``.

    :param results: result dicts from ``OxenGenerateImageOperator`` (templated; usually
        ``generate.output``), a list of such lists (mapped tasks), or generation ids.
    :param bucket: target bucket name (templated).
    :param prefix: key prefix every written key must stay inside (templated); ``""`` = bucket root.
    :param key_template: image key (templated). After Jinja, ``{prefix}``, ``{generation_id}``,
        ``{ext}``, ``{index}``, ``{model}``, ``{seed}`` and ``{run_id}`` are filled per image.
    :param manifest_key: manifest key (templated; ``{prefix}``, ``{run_id}``).
    :param contact_sheet_key: contact sheet key (templated; ``{prefix}``, ``{run_id}``).
    :param aws_conn_id: AWS connection for :class:`S3Hook`.
    :param oxen_conn_id: Oxen connection (to refresh expired result URLs).
    :param checks: True (defaults), False (off), or overrides such as
        ``{"min_bytes": 1024, "max_bytes": 20 * 2**20, "check_dimensions": True, "check_format": True}``
        (video clips: ``max_video_bytes``, ``check_duration``).
    :param fail_on_check_failure: raise after storing and reporting everything if any image failed.
    :param contact_sheet: build and store a contact sheet of the batch (4 thumbnails of 256 px per row).
    :param replace: overwrite objects at the keys that this transfer did not write (default: refuse).
    :param spool_max_bytes: bytes of one file kept in memory before spooling to disk.
    :param mark_provenance: write the IPTC digital source type, the model, the generation id, the
        provider and the input images into each file as XMP (templated; default True). A file
        of another type (not PNG, JPEG, WebP, MP4 or MOV) is stored unmarked, and its record says why.
    :param c2pa_conn_id: an ``oxen_c2pa`` connection (certificate chain and private key): each
        marked file is also signed with C2PA Content Credentials, its ``s3://`` inputs embedded as
        ingredients (the ``c2pa`` extra; see ``docs/provenance.md``). Default: not signed.
    :return: (XCom) one record per image or clip: the result's fields plus where and how it was
        stored (see ``docs/transfers.md``); XComs ``manifest_uri`` and ``contact_sheet_uri`` too.
    """

    template_fields: Sequence[str] = (
        "results",
        "bucket",
        "prefix",
        "key_template",
        "manifest_key",
        "contact_sheet_key",
        "mark_provenance",
    )
    template_fields_renderers = {"results": "json"}
    ui_color = "#ffe8c7"
    operator_extra_links = (OxenS3FolderLink(), OxenManifestLink())

    def __init__(
        self,
        *,
        results: Any,
        bucket: str,
        prefix: str,
        key_template: str = DEFAULT_KEY_TEMPLATE,
        manifest_key: str = DEFAULT_MANIFEST_KEY,
        contact_sheet_key: str = DEFAULT_CONTACT_SHEET_KEY,
        aws_conn_id: str | None = "aws_default",
        oxen_conn_id: str = OxenHook.default_conn_name,
        checks: CheckSettings | Mapping[str, Any] | bool = True,
        fail_on_check_failure: bool = False,
        contact_sheet: bool = True,
        replace: bool = False,
        spool_max_bytes: int = DEFAULT_SPOOL_BYTES,
        mark_provenance: bool | str = True,
        c2pa_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Parsed first, so a typo in the settings fails when the DAG is parsed, not at run time.
        self.check_settings = CheckSettings.from_param(checks)
        self.results = results
        self.bucket = bucket
        self.prefix = prefix
        self.key_template = key_template
        self.manifest_key = manifest_key
        self.contact_sheet_key = contact_sheet_key
        self.aws_conn_id = aws_conn_id
        self.oxen_conn_id = oxen_conn_id
        self.fail_on_check_failure = fail_on_check_failure
        self.contact_sheet = contact_sheet
        self.replace = replace
        self.spool_max_bytes = spool_max_bytes
        self.mark_provenance = mark_provenance
        self.c2pa_conn_id = c2pa_conn_id
        self._credentials: SigningCredentials | None = None
        self._sources: dict[str, Ingredient] = {}

    def _needs_bytes(self, item: _Planned, poster_in_place: bool) -> bool:
        """Whether the file's bytes must be read (an image: checks or the sheet; a clip: PyAV's work)."""
        if not item.video:
            return self.check_settings.enabled or self.contact_sheet
        if load_av() is None:
            return False  # nothing to decode it with: stored unchecked, without a poster
        return self.check_settings.enabled or self.contact_sheet or not poster_in_place

    def s3_hook(self) -> S3Hook:
        # Imported here: the amazon provider is an optional extra of this package.
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    # -- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> list[dict[str, Any]]:
        bucket = check_bucket(self.bucket)
        prefix = normalise_prefix(self.prefix)
        marks = _flag(self.mark_provenance, "mark_provenance")
        if self.c2pa_conn_id:
            if not marks:
                raise OxenValidationError(
                    "c2pa_conn_id signs the marked file: it needs mark_provenance=True", field="c2pa_conn_id"
                )
            # Proven before anything is downloaded: a bad certificate fails the task, not half a batch.
            self._credentials = SigningCredentials.from_connection(self.c2pa_conn_id)
        OxenS3FolderLink.persist(context, self)
        run_id = str(context["run_id"])
        with OxenHook(self.oxen_conn_id) as oxen:
            results = self._results(oxen)
            if not results:
                self.log.warning("No results to store: nothing written.")
                return []
            plan, manifest_key, sheet_key = self._plan(results, prefix, run_id)
            if self._credentials is not None:  # every C2PA ingredient read (and sized) before any upload
                for ingredient in (i for item in plan for i in _facts(item.result).ingredients):
                    self._source(ingredient)
            store = S3ObjectStore(self.s3_hook(), bucket)
            artefacts = {manifest_key: MANIFEST_KIND}
            if sheet_key is not None:
                artefacts[sheet_key] = CONTACT_SHEET_KIND
            posters = self._refuse_foreign_objects(store, plan, artefacts)
            videos = sum(1 for item in plan if item.video)
            if videos and load_av() is None:
                self.log.warning(
                    "PyAV is not installed: %d video clip(s) are stored without checks or poster frames "
                    '(pip install "airflow-provider-oxen[video]").',
                    videos,
                )
            self.log.info(
                "Storing %d %s under %s",
                len(plan),
                "image(s)" if not videos else f"file(s) ({videos} video clip(s))",
                store.uri(prefix + "/" if prefix else ""),
            )
            if not marks:
                self.log.info("Provenance marking is off: files are stored as Oxen returned them.")
            outcomes = [
                self._transfer(item, oxen, store, posters.get(item.poster_key), marks) for item in plan
            ]
        records = [record for record, _ in outcomes]
        noun = "file(s)" if videos else "image(s)"

        sheet = None
        if self.contact_sheet and sheet_key is not None:
            sheet = self._store_contact_sheet(store, sheet_key, [item for _, item in outcomes], run_id)
        manifest = build_manifest(
            records,
            bucket=bucket,
            prefix=prefix,
            run_id=run_id,
            checks=self.check_settings,
            contact_sheet=sheet,
        )
        action, _ = store.put_bytes(
            manifest_key,
            manifest_bytes(manifest),
            content_type="application/json",
            metadata={RUN_ID_META: run_id},
            owner=(KIND_META, MANIFEST_KIND),
            replace=self.replace,
        )
        manifest_uri = store.uri(manifest_key)
        self.log.info("Manifest %s: %s", action.value, manifest_uri)

        sheet_uri = sheet["s3_uri"] if sheet else None
        summary = self._publish(context, records, manifest_uri, sheet_uri, run_id)
        self.log.info(
            "Done: %d %s, %d stored, %d replaced, %d skipped, %d failed checks; manifest %s",
            summary["count"],
            noun,
            summary["stored"],
            summary["replaced"],
            summary["skipped"],
            summary["failed_checks"],
            manifest_uri,
        )
        self._lineage = (oxen.settings.base_url, records, [manifest_uri, sheet_uri])
        failures = [r for r in records if check_failed(r)]
        if failures and self.fail_on_check_failure:
            raise OxenCheckFailedError(failures, len(records), noun)
        return records

    # -- planning (nothing is uploaded until every key is known to be safe) ----------------------------

    def _results(self, oxen: OxenHook) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        for item in flatten_results(self.results):
            if isinstance(item, str):
                # A bare generation id (wait_for_completion=False + sensor): read its row.
                item = build_result(oxen.get_generation(item))
            result = check_result(item)
            if not result.get("output_format") and result.get("model") and not is_video(result):
                # Left to the model: its schema's default is what it made.
                with contextlib.suppress(OxenError):
                    default = oxen.get_model(str(result["model"])).parameter_defaults.get("output_format")
                    result = {**result, "output_format": default}
            if result["generation_id"] in seen:
                self.log.warning(
                    "Result %s appears more than once; storing it once.", result["generation_id"]
                )
                continue
            seen.add(result["generation_id"])
            results.append(result)
        return results

    def _plan(
        self, results: list[dict[str, Any]], prefix: str, run_id: str
    ) -> tuple[list[_Planned], str, str | None]:
        plan: list[_Planned] = []
        owners: dict[str, str] = {}
        for index, result in enumerate(results):
            video = is_video(result)
            expected = ExpectedVideo.from_result(result) if video else ExpectedImage.from_result(result)
            if expected.format is None and video:
                self.log.warning(
                    "Result %s has no output_format: its key gets extension '%s'.",
                    result["generation_id"],
                    _UNKNOWN_EXTENSION,
                )
            values = {
                "prefix": prefix,
                "generation_id": result["generation_id"],
                "ext": _extension(expected.format),
                "index": index,
                "model": result.get("model"),
                "seed": result.get("seed"),
                "run_id": run_id,
            }
            key = render_key(self.key_template, values, prefix=prefix, allowed=IMAGE_KEY_FIELDS, what="key")
            _claim(owners, key, str(result["generation_id"]))
            poster = None
            if video:
                poster = check_key(poster_key(key), prefix, what="poster key")
                _claim(owners, poster, f"the poster frame of {result['generation_id']}")
            unknown = expected.format is None and not video
            plan.append(_Planned(index, result, key, expected, prefix, poster, values if unknown else None))

        def batch_key(template: str, what: str, owner: str) -> str:
            values = {"prefix": prefix, "run_id": run_id}
            key = render_key(template, values, prefix=prefix, allowed=BATCH_KEY_FIELDS, what=what)
            _claim(owners, key, owner)
            return key

        manifest_key = batch_key(self.manifest_key, "manifest_key", "the manifest")
        if not self.contact_sheet:
            return plan, manifest_key, None
        return plan, manifest_key, batch_key(self.contact_sheet_key, "contact_sheet_key", "the contact sheet")

    def _refuse_foreign_objects(
        self, store: S3ObjectStore, plan: list[_Planned], artefacts: dict[str, str]
    ) -> dict[str | None, ExistingObject | None]:
        """HEAD the manifest, sheet and poster keys up front (a batch must not stop half done): one
        holding an object this transfer did not write is refused unless ``replace=True``."""
        for key, kind in artefacts.items():
            existing = None if self.replace else store.head(key)
            if existing is not None and existing.metadata.get(KIND_META) != kind:
                raise OxenKeyConflictError(
                    f"{store.uri(key)} already holds an object this operator did not write; pass "
                    "replace=True to overwrite it, or change manifest_key / contact_sheet_key."
                )
        posters: dict[str | None, ExistingObject | None] = {
            item.poster_key: store.head(item.poster_key) for item in plan if item.poster_key
        }
        for item in plan:
            poster = posters.get(item.poster_key)
            if (
                poster is not None
                and not self.replace
                and not poster.is_generation(item.result["generation_id"])
            ):
                raise OxenKeyConflictError(
                    f"{store.uri(str(item.poster_key))} (the poster frame of {item.result['generation_id']}) "
                    "already holds an object this transfer did not write for that generation; pass "
                    "replace=True to overwrite it, or change the key template."
                )
        return posters

    # -- one image or clip ---------------------------------------------------------------------------

    def _transfer(
        self,
        item: _Planned,
        oxen: OxenHook,
        store: S3ObjectStore,
        poster_head: ExistingObject | None,
        marks: bool,
    ) -> tuple[dict[str, Any], SheetItem]:
        result = item.result
        generation_id = str(result["generation_id"])
        prompt = result.get("prompt")
        values = {
            GENERATION_ID_META: generation_id,
            "model": result.get("model"),
            "prompt-sha256": hashlib.sha256(prompt.encode()).hexdigest() if isinstance(prompt, str) else None,
            "seed": result.get("seed"),
        }
        metadata = s3_metadata(values)
        facts = _facts(result)
        existing = store.head(item.key)
        # Ours, stored the way this run would store it (marked, or not): it may be kept as it is.
        kept = existing if self._keeps(existing, generation_id, marks) else None
        recorded = kept.sha256 if kept is not None else None
        # What S3's own checksum says about it against the sha256 it was stored with.
        proven = kept.content_matches(recorded) if kept is not None and recorded else None
        in_place = self._poster_in_place(item, store, poster_head, recorded if proven else None)
        if kept is not None and recorded and proven and not self._needs_bytes(item, in_place is not None):
            # S3's checksum proves the bytes are the ones recorded: no download.
            fetched = Fetched(kept.size, recorded, kept.content_type)
            analysis = self._analyse(item, None, fetched.size)
            return self._report(
                item, store, WriteAction.SKIPPED, fetched, analysis, facts, kept.metadata, in_place
            )

        with Spool(self.spool_max_bytes) as spool:
            stored_copy = None
            if kept is not None and proven is not False:
                stored_copy = self._stored_copy(item, kept, store, spool)
            elif kept is not None:
                self.log.warning(
                    "%s no longer holds the bytes it was stored with (S3's checksum %s, recorded sha256 "
                    "%s…): downloading it again.",
                    store.uri(item.key),
                    kept.full_object_checksum,
                    (recorded or "")[:12],
                )
            fetched = stored_copy or fetch_result(oxen, generation_id, result.get("result_url"), spool)
            if item.values is not None:
                # The format was nobody's to say: the key is named by what the bytes are.
                item = self._named_by_content(item, spool, fetched.content_type)
                existing, kept = store.head(item.key), None
            if stored_copy is not None and kept is not None:
                action, marking = WriteAction.SKIPPED, kept.metadata
            else:
                fetched, marking = self._mark(item, spool, fetched, facts, marks)
                same = existing is not None and store.holds(item.key, existing, fetched.sha256, fetched.size)
                action = plan_write(
                    existing,
                    same_content=same,
                    owner=(GENERATION_ID_META, metadata[GENERATION_ID_META]),
                    replace=self.replace,
                    uri=store.uri(item.key),
                )
            in_place = self._poster_in_place(item, store, poster_head, fetched.sha256)
            # Checked before the upload, which may close the spool (boto3 closes a file object it sent).
            needed = self._needs_bytes(item, in_place is not None)
            analysis = self._analyse(item, spool if needed else None, fetched.size)
            content_type = _content_type(item, analysis.mime_type, fetched.content_type)
            if action is not WriteAction.SKIPPED:
                store.upload(
                    spool,
                    item.key,
                    content_type=content_type,
                    metadata={**metadata, **marking, SHA256_META: fetched.sha256},
                )
        poster = in_place
        if analysis.poster is not None:
            # After the clip: a poster frame always describes the clip stored at its key.
            data = (mark(analysis.poster, facts) if marks else None) or analysis.poster
            assert item.poster_key is not None
            poster_action, sha256 = store.put_bytes(
                item.poster_key,
                data,
                content_type=POSTER_CONTENT_TYPE,
                metadata={**values, KIND_META: POSTER_KIND, SOURCE_SHA256_META: fetched.sha256},
                owner=(GENERATION_ID_META, generation_id),
                replace=self.replace,
            )
            poster = _poster_fields(store, item.poster_key, sha256, len(data), poster_action)
        return self._report(item, store, action, fetched, analysis, facts, marking, poster)

    def _mark(
        self, item: _Planned, spool: Spool, fetched: Fetched, facts: Provenance, marks: bool
    ) -> tuple[Fetched, dict[str, str]]:
        """Mark the downloaded file in the spool: what is now there, and the metadata saying how."""
        oxen_sha256 = {OXEN_SHA256_META: fetched.sha256}
        if not marks:
            return fetched, {**oxen_sha256, PROVENANCE_META: "off"}
        if not mark_file(cast("IO[bytes]", spool), facts):
            self.log.warning(
                "Storing %s unmarked: %s.", item.result["generation_id"], _UNMARKED["unmarkable"]
            )
            return fetched, {**oxen_sha256, PROVENANCE_META: "unmarkable"}
        state = self._sign(item, spool, facts) if self._credentials is not None else MARKED
        spool.seek(0)
        digest, size = hashlib.sha256(), 0
        while chunk := spool.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
        stored = replace(fetched, size=size, sha256=digest.hexdigest())
        return stored, {**oxen_sha256, PROVENANCE_META: state}

    def _keeps(self, existing: ExistingObject | None, generation_id: str, marks: bool) -> bool:
        """Whether ``existing`` is this generation's file, made the way this run would make it."""
        if existing is None or existing.sha256 is None or not existing.is_generation(generation_id):
            return False
        if not marks:
            states: tuple[str, ...] = ("off",)
        elif self._credentials is not None:
            states = (SIGNED, "unsigned", "unmarkable")
        else:
            states = (MARKED, "unmarkable")
        return existing.metadata.get(PROVENANCE_META) in states

    def _sign(self, item: _Planned, spool: Spool, facts: Provenance) -> str:
        """Sign the marked file in the spool with C2PA; the provenance state it then has."""
        assert self._credentials is not None
        mime_type = _content_type(item, identify_mime_type(cast("IO[bytes]", spool)), None)
        sources = tuple(self._source(ingredient) for ingredient in facts.ingredients)
        signed = sign(spool.read(), mime_type, replace(facts, ingredients=sources), self._credentials)
        if signed is None:
            self.log.warning("Storing %s unsigned: %s.", facts.generation_id, _UNMARKED["unsigned"])
            return "unsigned"
        spool.reset()
        spool.write(signed)
        return SIGNED

    def _source(self, ingredient: Ingredient) -> Ingredient:
        """An input image with its bytes, for C2PA to hash and embed (read once per task)."""
        if not ingredient.uri.startswith("s3://"):
            # A URL input is named in the XMP; C2PA needs bytes this task has no safe way to read.
            return ingredient
        if ingredient.uri not in self._sources:
            bucket, _, key = ingredient.uri.removeprefix("s3://").partition("/")
            response = self.s3_hook().get_conn().get_object(Bucket=bucket, Key=key)
            data = response["Body"].read(_SOURCE_MAX_BYTES + 1)
            if len(data) > _SOURCE_MAX_BYTES:
                raise OxenValidationError(
                    f"Input {ingredient.uri} is over {_SOURCE_MAX_BYTES} bytes, too big to embed as a C2PA "
                    "ingredient; nothing was stored",
                    field="results",
                )
            mime_type = str(response.get("ContentType") or ingredient.mime_type)
            self._sources[ingredient.uri] = replace(ingredient, data=data, mime_type=mime_type)
        return self._sources[ingredient.uri]

    def _named_by_content(self, item: _Planned, spool: Spool, served_type: str | None) -> _Planned:
        """``item`` keyed with the extension of the image type its bytes declare (else the served one)."""
        mime = identify_mime_type(cast("IO[bytes]", spool)) or (served_type or "").split(";")[0].strip()
        fmt = next((name for name, known in MIME_TYPES.items() if known == mime), None)
        if fmt is None:
            self.log.warning(
                "Result %s is of no known image type: its key gets extension '%s'.",
                item.result["generation_id"],
                _UNKNOWN_EXTENSION,
            )
            return replace(item, values=None)
        values = {**(item.values or {}), "ext": _extension(fmt)}
        key = render_key(self.key_template, values, prefix=item.prefix, allowed=IMAGE_KEY_FIELDS, what="key")
        return replace(item, key=key, expected=replace(item.expected, format=fmt), values=None)

    # -- a clip's poster frame -------------------------------------------------------------------------

    def _poster_in_place(
        self, item: _Planned, store: S3ObjectStore, head: ExistingObject | None, clip_sha256: str | None
    ) -> dict[str, Any] | None:
        """The clip's poster frame, if one this transfer stored for exactly these clip bytes is at its key
        (S3's checksum proving it holds the bytes its metadata records)."""
        if item.poster_key is None or head is None or clip_sha256 is None or head.sha256 is None:
            return None
        if (
            not head.is_generation(item.result["generation_id"])
            or head.metadata.get(KIND_META) != POSTER_KIND
            or head.metadata.get(SOURCE_SHA256_META) != clip_sha256
            or head.content_matches(head.sha256) is not True
        ):
            return None
        return _poster_fields(store, item.poster_key, head.sha256, head.size, WriteAction.SKIPPED)

    def _stored_copy(
        self, item: _Planned, existing: ExistingObject, store: S3ObjectStore, spool: Spool
    ) -> Fetched | None:
        """On a re-run, read back our own stored copy; hashing it proves it holds the bytes on record."""
        size, sha256 = store.read_into(item.key, spool)
        if sha256 == existing.sha256:
            return Fetched(size, sha256, existing.content_type)
        self.log.warning(
            "%s does not match its recorded sha256 (%s…, found %s…): downloading it again.",
            store.uri(item.key),
            (existing.sha256 or "")[:12],
            sha256[:12],
        )
        return None

    def _analyse(self, item: _Planned, spool: Spool | None, size: int) -> _Analysis:
        """Check, thumbnail and (a clip) take the poster frame of the spooled file, if given."""
        analysis = _Analysis()
        if spool is None:
            if item.video and self.check_settings.enabled:
                analysis.check = VideoCheck.not_checked()  # only without PyAV: else the bytes are read
            return analysis

        def keep(image: Image.Image) -> None:
            if item.video:
                analysis.poster = poster_jpeg(image)
            if self.contact_sheet:
                analysis.thumbnail = make_thumbnail(image)

        # The spool is file-like (read/seek/tell), which is all Pillow and PyAV need.
        fileobj = cast("IO[bytes]", spool)
        if item.video:
            assert isinstance(item.expected, ExpectedVideo)
            # From the spool's file on disk by path (FFmpeg reads it in small blocks), else from
            # memory; every frame is decoded only when the checks run.
            decoded = decode_video(
                spool.path or fileobj, on_poster=keep, decode_all=self.check_settings.enabled
            )
            if self.check_settings.enabled:
                analysis.check = evaluate_video(decoded, size, item.expected, self.check_settings)
            analysis.mime_type = VIDEO_MIME_TYPES.get(decoded.format or "") if decoded.error is None else None
            analysis.duration_seconds = decoded.duration_seconds
            return analysis
        decoded_image = decode_image(fileobj, on_decoded=keep)
        if self.check_settings.enabled:
            analysis.check = evaluate(decoded_image, size, item.expected, self.check_settings)
        # What the first bytes declare: a corrupt or cut image is still named by its signature.
        analysis.mime_type = identify_mime_type(fileobj)
        return analysis

    def _report(
        self,
        item: _Planned,
        store: S3ObjectStore,
        action: WriteAction,
        fetched: Fetched,
        analysis: _Analysis,
        facts: Provenance,
        marking: Mapping[str, str],
        poster: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], SheetItem]:
        """The record and contact-sheet item of one file; ``marking``: its metadata on how it was marked."""
        uri = store.uri(item.key)
        state = marking.get(PROVENANCE_META)
        check = analysis.check
        record = image_record(
            item.result,
            s3_key=item.key,
            s3_uri=uri,
            s3_prefix=item.prefix,
            sha256=fetched.sha256,
            oxen_sha256=marking.get(OXEN_SHA256_META),
            size_bytes=fetched.size,
            content_type=_content_type(item, analysis.mime_type, fetched.content_type),
            check=check,
            action=action.value,
            url_refreshed=fetched.refresh_reason is not None,
            poster=(poster or _NO_POSTER) if item.video else None,
            provenance={
                "state": _RECORD_STATES.get(str(state), "unmarked"),
                "digital_source_type": facts.digital_source_type,
                "reason": _UNMARKED.get(str(state)),
            },
        )
        verdict = check.summary() if check is not None else "not run"
        self.log.log(
            logging.WARNING if check is not None and check.ok is False else logging.INFO,
            "%-8s %s (%d bytes, sha256 %s…, %s, checks: %s)%s",
            action.value,
            uri,
            fetched.size,
            fetched.sha256[:12],
            record["provenance"]["state"],
            verdict,
            f" [result URL refreshed after {fetched.refresh_reason}]" if fetched.refresh_reason else "",
        )
        if poster is not None:
            self.log.info(
                "%-8s %s (poster frame, %d bytes, sha256 %s…)",
                poster["poster_action"],
                poster["poster_s3_uri"],
                poster["poster_size_bytes"],
                poster["poster_sha256"][:12],
            )
        duration = analysis.duration_seconds
        if duration is None and isinstance(item.expected, ExpectedVideo):
            duration = item.expected.duration_seconds
        sheet_item = SheetItem(
            image=analysis.thumbnail,
            generation_id=str(item.result["generation_id"]),
            prompt=item.result.get("prompt"),
            ok=check.ok if check is not None else None,
            problems=tuple(check.problems) if check is not None else (),
            media_type="video" if item.video else "image",
            duration_seconds=duration,
            note=check.note if isinstance(check, VideoCheck) else None,
        )
        return record, sheet_item

    # -- batch artefacts and events -------------------------------------------------------------------

    def _store_contact_sheet(
        self, store: S3ObjectStore, key: str, items: list[SheetItem], run_id: str
    ) -> dict[str, Any]:
        data = make_contact_sheet(items)
        action, sha256 = store.put_bytes(
            key,
            data,
            content_type="image/png",
            metadata={RUN_ID_META: run_id},
            owner=(KIND_META, CONTACT_SHEET_KIND),
            replace=self.replace,
        )
        self.log.info("Contact sheet %s: %s (%d bytes)", action.value, store.uri(key), len(data))
        return {
            "s3_key": key,
            "s3_uri": store.uri(key),
            "sha256": sha256,
            "size_bytes": len(data),
            "columns": COLUMNS,
            "thumb": THUMB,
        }

    def _publish(
        self,
        context: Context,
        records: list[dict[str, Any]],
        manifest_uri: str,
        sheet_uri: str | None,
        run_id: str,
    ) -> dict[str, Any]:
        """The batch's summary: returned, and on each Asset outlet; XComs ``manifest_uri`` and
        ``contact_sheet_uri``."""
        actions = [r["action"] for r in records]
        summary: dict[str, Any] = {
            "count": len(records),
            "stored": actions.count(WriteAction.STORED.value),
            "replaced": actions.count(WriteAction.REPLACED.value),
            "skipped": actions.count(WriteAction.SKIPPED.value),
            "failed_checks": sum(1 for r in records if check_failed(r)),
            "manifest_uri": manifest_uri,
            "contact_sheet_uri": sheet_uri,
            "run_id": run_id,
        }
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="manifest_uri", value=manifest_uri)
            if sheet_uri is not None:
                ti.xcom_push(key="contact_sheet_uri", value=sheet_uri)
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = dict(summary)
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the generations in; the stored files, poster frames, manifest and sheet out."""
        from airflow_provider_oxen.lineage import generation_uri, operator_lineage

        base_url, records, batch = getattr(self, "_lineage", ("", [], []))
        stored = [record.get(name) for record in records for name in ("s3_uri", "poster_s3_uri")]
        return operator_lineage(
            [generation_uri(base_url, record["generation_id"]) for record in records],
            [uri for uri in (*stored, *batch) if uri],
            records,
        )


def _claim(owners: dict[str, str], key: str, owner: str) -> None:
    """Two things written to one key would overwrite each other: refuse before uploading anything."""
    if key in owners:
        raise OxenKeyError(
            f"{owners[key]} and {owner} would both be written to {key!r}: make the key template "
            "unique per image or clip (use {generation_id} or {index})",
            field="key_template",
        )
    owners[key] = owner


def _facts(result: Mapping[str, Any]) -> Provenance:
    """What the marking says of a result; its inputs as the DAG named them."""
    uris = result.get("input_uris") or ()
    return Provenance(
        generation_id=str(result["generation_id"]),
        model=str(result.get("model") or ""),
        software_agent=SOFTWARE_AGENT,
        ingredients=tuple(Ingredient(uri, mimetypes.guess_type(uri)[0] or "") for uri in uris),
    )


def _flag(value: bool | str, field: str) -> bool:
    """A templated switch: a bool, or the text a template renders one to."""
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise OxenValidationError(f"{field} must be True or False, got {value!r:.60}", field=field)
    return text == "true"


def _content_type(item: _Planned, identified_mime_type: str | None, served_type: str | None) -> str:
    """What the bytes are (an image's header, a clip as decoded) beats what the server said,
    which beats what was asked for."""
    if identified_mime_type:
        return identified_mime_type
    served = (served_type or "").split(";", 1)[0].strip().lower()
    if served.startswith("video/" if item.video else "image/"):
        return served
    types = VIDEO_MIME_TYPES if item.video else MIME_TYPES
    return types.get(item.expected.format or "", "application/octet-stream")
