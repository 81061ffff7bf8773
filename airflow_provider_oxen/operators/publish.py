"""OxenPublishReviewedOperator: apply review decisions to a stored batch in S3.

Approved files are copied under ``approved_prefix``, rejected ones moved under ``rejected_prefix``
(a clip with its poster frame), those sent back come back as new prompts; publishing follows the
current decision, undoing an earlier one. Only what the transfer wrote is touched (keys inside its
prefix, objects carrying the record's ``generation-id``), all checked before the first copy or
delete; a re-run does not repeat what a previous try did.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_oxen.exceptions import (
    OxenKeyConflictError,
    OxenKeyError,
    OxenPublishError,
    OxenValidationError,
)
from airflow_provider_oxen.media.video import is_video
from airflow_provider_oxen.review_form import APPROVE, REGENERATE, REJECT
from airflow_provider_oxen.transfers.batch import flatten_results
from airflow_provider_oxen.transfers.keys import check_bucket, check_key, normalise_prefix
from airflow_provider_oxen.transfers.store import GENERATION_ID_META, ExistingObject, S3ObjectStore

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

_REFUSING = "refusing to publish anything"


def regeneration_prompt(prompt: str, note: str) -> str:
    return f"{prompt.rstrip()} (Reviewer note: {note.strip()})" if note.strip() else prompt


@dataclass(frozen=True)
class _Item:
    """One stored file of a record (its image or clip, or a clip's poster frame) with the record's
    decision and, for approve/reject, where the file goes."""

    record: Mapping[str, Any]
    generation_id: str
    decision: str
    key: str
    target: str | None
    # Where the other decision puts the file (the approved copy for a rejection or regeneration).
    other: str
    sha256: str
    size: int | None
    poster: bool = False

    @property
    def what(self) -> str:
        if self.poster:
            return "poster frame"
        return "clip" if is_video(self.record) else "image"


@dataclass(frozen=True)
class _Step:
    """What S3 needs for one item: copy it (from its original, or ``from_other``), delete the
    original, delete the file at ``item.other`` (``unplace``), or nothing (already done)."""

    item: _Item
    copy: bool
    delete: bool
    source: ExistingObject | None
    from_other: bool = False
    unplace: bool = False


class OxenPublishReviewedOperator(BaseOperator):
    """Copy approved images and clips to ``approved_prefix``, move rejected ones aside, list regenerations.

    A clip's poster frame goes with it (copied or moved alike).

    :param records: records from ``OxenGenerationToS3Operator`` (templated / XComArg).
    :param review: the review operator's result: ``{"decisions": {...}, "note": "..."}``.
    :param bucket: the bucket the transfer wrote to (templated); records naming another are refused.
    :param prefix: the transfer's prefix (templated); records whose keys are outside it are
        refused. Default: the ``s3_prefix`` the records carry (they must all agree).
    :param approved_prefix: where approved images go, e.g. ``approved/{{ params.campaign }}`` (templated).
    :param rejected_prefix: where rejected images go (templated).
    :return: ``{"approved": [uri], "rejected": [uri], "approved_posters": [uri],
        "rejected_posters": [uri], "regenerate": [{"prompt", "image_size", ...}]}`` (the images'
        and clips' new URIs, then the clips' poster frames'); the regenerations are also pushed
        under the XCom key ``regenerate``. A re-run returns the same (files already published
        count as published).
    """

    template_fields: Sequence[str] = (
        "records",
        "review",
        "bucket",
        "prefix",
        "approved_prefix",
        "rejected_prefix",
    )

    def __init__(
        self,
        *,
        records: Any,
        review: Any,
        bucket: str,
        approved_prefix: str,
        rejected_prefix: str,
        prefix: str | None = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.records = records
        self.review = review
        self.bucket = bucket
        self.prefix = prefix
        self.approved_prefix = approved_prefix
        self.rejected_prefix = rejected_prefix
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, list[Any]]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket = check_bucket(self.bucket)
        review: Mapping[str, Any] = self.review or {}
        decisions: Mapping[str, str] = review.get("decisions") or {}
        note = str(review.get("note") or "")

        items = self._plan(bucket, decisions)  # every key checked before S3 is even asked
        store = S3ObjectStore(S3Hook(aws_conn_id=self.aws_conn_id), bucket)
        steps = [self._inspect(store, item) for item in items]
        for step in steps:
            self._apply(store, step)
        self._published = (bucket, items)

        outcome: dict[str, list[Any]] = {
            "approved": [],
            "rejected": [],
            "approved_posters": [],
            "rejected_posters": [],
            "regenerate": [],
        }
        for item in items:
            if item.decision == REGENERATE:
                if not item.poster:
                    outcome["regenerate"].append(_regeneration(item, note))
            else:
                name = "approved" if item.decision == APPROVE else "rejected"
                outcome[f"{name}_posters" if item.poster else name].append(store.uri(str(item.target)))
        ti = context.get("ti")
        if ti is not None:
            # Its own XCom key, so a downstream trigger can take ``publish.output["regenerate"]``.
            ti.xcom_push(key="regenerate", value=outcome["regenerate"])
        self.log.info(
            "Published %d, rejected %d, %d to regenerate.",
            len(outcome["approved"]),
            len(outcome["rejected"]),
            len(outcome["regenerate"]),
        )
        return outcome

    def _source_prefix(self, records: Sequence[Mapping[str, Any]]) -> str:
        if self.prefix is not None:
            return normalise_prefix(self.prefix)
        found: dict[str, str] = {}
        for record in records:
            prefix = record.get("s3_prefix")
            if not isinstance(prefix, str):
                raise OxenValidationError(
                    f"Record {record.get('generation_id')} (s3_key {record.get('s3_key')!r}) does not say "
                    "which prefix its transfer wrote under (no s3_prefix); pass prefix= to say which "
                    f"objects may be published; {_REFUSING}",
                    field="prefix",
                )
            found.setdefault(normalise_prefix(prefix), str(record.get("s3_key")))
        if len(found) > 1:
            raise OxenValidationError(
                f"The records come from several prefixes ({sorted(found)}); pass prefix= to say which "
                f"transfer's objects may be published; {_REFUSING}",
                field="prefix",
            )
        return next(iter(found), "")

    def _plan(self, bucket: str, decisions: Mapping[str, str]) -> list[_Item]:
        """Every file and where it goes, each key confined to its prefix, before any S3 request."""
        records: list[Mapping[str, Any]] = []
        for record in flatten_results(self.records):
            if not isinstance(record, Mapping) or not record.get("s3_key"):
                self.log.warning("Ignoring a record with no s3_key: %.120r", record)
                continue
            records.append(record)
        if not records:
            return []
        source_prefix = self._source_prefix(records)
        targets = {
            APPROVE: _target_prefix(self.approved_prefix, "approved_prefix"),
            REJECT: _target_prefix(self.rejected_prefix, "rejected_prefix"),
        }
        if targets[APPROVE][0] == targets[REJECT][0]:
            raise OxenValidationError(
                f"approved_prefix and rejected_prefix are both {targets[APPROVE][0]!r}: a decision could not "
                f"be told from the other; {_REFUSING}",
                field="rejected_prefix",
            )
        items: list[_Item] = []
        seen: dict[str, str] = {}
        for record in records:
            generation_id = str(record.get("generation_id") or "")
            key = _stored_key(record, "s3", "the file", bucket, source_prefix)
            if seen.get(key) == generation_id:
                continue  # the same record twice
            files = [(key, record.get("sha256"), record.get("size_bytes"), False)]
            if is_video(record) and record.get("poster_s3_key"):
                poster_key = _stored_key(record, "poster_s3", "the poster frame", bucket, source_prefix)
                files.append((poster_key, record.get("poster_sha256"), record.get("poster_size_bytes"), True))
            # A file nobody decided on is not published.
            decision = decisions.get(generation_id, REJECT)
            if decision != REGENERATE:
                decision = APPROVE if decision == APPROVE else REJECT
            for file_key, sha256, size, poster in files:
                if not isinstance(sha256, str) or not sha256:
                    raise OxenValidationError(
                        f"Record {generation_id} names no {'poster_' if poster else ''}sha256: it is not a "
                        f"record of OxenGenerationToS3Operator; {_REFUSING}",
                        field="records",
                    )
                if file_key in seen:
                    raise OxenValidationError(
                        f"Records {seen[file_key]} and {generation_id} both name {file_key!r}; {_REFUSING}",
                        field="records",
                    )
                seen[file_key] = generation_id
                placed = {
                    choice: check_key(
                        f"{prefix}/{posixpath.basename(file_key)}",
                        prefix,
                        what=f"{field} target",
                        refusing=_REFUSING,
                    )
                    for choice, (prefix, field) in targets.items()
                }
                items.append(
                    _Item(
                        record=record,
                        generation_id=generation_id,
                        decision=decision,
                        key=file_key,
                        target=placed.get(decision),
                        other=placed[REJECT if decision == APPROVE else APPROVE],
                        sha256=sha256,
                        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                        poster=poster,
                    )
                )
        _check_targets(items)
        return items

    def _inspect(self, store: S3ObjectStore, item: _Item) -> _Step:
        """What S3 needs for ``item``, from HEAD requests only (still before any change)."""
        move = item.decision == REJECT
        source = store.head(item.key)
        # This file where an earlier, different decision put it (only ever ours: same generation, bytes).
        found = store.head(item.other)
        earlier = found if found is not None and self._holds_item(store, item.other, found, item) else None
        if item.target is None:
            # Sent back for regeneration: unpublished, as long as the original is still in place.
            kept = source is not None and source.is_generation(item.generation_id)
            return _Step(item, copy=False, delete=False, source=source, unplace=kept and earlier is not None)
        target = store.head(item.target)
        if target is not None and self._holds_item(store, item.target, target, item):
            # Copied by an earlier try. A rejected image's original may still need removing, but
            # only if it is still the record's image.
            if move and source is not None:
                self._check_source(store, item, source)
                return _Step(item, copy=False, delete=True, source=source, unplace=earlier is not None)
            return _Step(item, copy=False, delete=False, source=source, unplace=earlier is not None)
        if target is not None and not target.is_generation(item.generation_id):
            raise OxenKeyConflictError(
                f"{store.uri(item.target)} already holds an object that is not generation "
                f"{item.generation_id}'s {item.what}; {_REFUSING}"
            )
        if source is None and earlier is not None:
            # Moved aside by an earlier rejection (or its original deleted since an approval).
            return _Step(item, copy=True, delete=False, source=earlier, from_other=True, unplace=True)
        if source is None:
            raise OxenPublishError(
                f"{store.uri(item.key)} (record {item.generation_id}) does not exist, and "
                f"{store.uri(item.target)} does not hold it either: it was moved or deleted by "
                f"something else; {_REFUSING}"
            )
        self._check_source(store, item, source)
        return _Step(item, copy=True, delete=move, source=source, unplace=earlier is not None)

    def _check_source(self, store: S3ObjectStore, item: _Item, source: ExistingObject) -> None:
        """The object at the record's key must be the one the transfer stored for this record."""
        uri = store.uri(item.key)
        if not source.is_generation(item.generation_id):
            raise OxenKeyConflictError(
                f"{uri} is not the {item.what} the transfer stored for record {item.generation_id} (its "
                f"{GENERATION_ID_META} metadata is {source.metadata.get(GENERATION_ID_META) or 'unset'}); "
                f"{_REFUSING}"
            )
        if not store.holds(item.key, source, item.sha256, item.size):
            raise OxenPublishError(
                f"{uri} no longer holds the bytes record {item.generation_id} describes (sha256 "
                f"{item.sha256[:12]}…): it was overwritten since it was stored; {_REFUSING}"
            )

    def _holds_item(self, store: S3ObjectStore, key: str, found: ExistingObject, item: _Item) -> bool:
        """Whether ``found`` (at ``key``) is this record's file: the same generation, the same bytes."""
        return found.is_generation(item.generation_id) and store.holds(key, found, item.sha256, item.size)

    def _apply(self, store: S3ObjectStore, step: _Step) -> None:
        item = step.item
        if step.unplace:
            self.log.info(
                "%s: %s %s: removing %s", item.generation_id, item.decision, item.what, store.uri(item.other)
            )
        if item.target is None:
            if step.unplace:
                store.delete(item.other)
            return
        source_key = item.other if step.from_other else item.key
        source_uri, target_uri = store.uri(source_key), store.uri(item.target)
        if step.copy:
            assert step.source is not None
            store.copy(source_key, item.target, source_etag=step.source.etag)
            copied = store.head(item.target)
            if copied is None or not self._holds_item(store, item.target, copied, item):
                raise OxenPublishError(
                    f"The copy of {source_uri} at {target_uri} could not be verified; the original "
                    "was left in place"
                )
        if step.delete:
            store.delete(item.key)
        if step.unplace:
            store.delete(item.other)
        if item.decision == APPROVE:
            self.log.info(
                "%s: approve %s: %s %s",
                item.generation_id,
                item.what,
                "copied to" if step.copy else "already at",
                target_uri,
            )
        elif step.copy or step.delete:
            self.log.info(
                "%s: reject %s: moved %s to %s", item.generation_id, item.what, source_uri, target_uri
            )
        else:
            self.log.info("%s: reject %s: already moved to %s", item.generation_id, item.what, target_uri)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the stored files in, their approved copies (and the rejected ones moved aside) out."""
        from airflow_provider_oxen.lineage import operator_lineage

        bucket, items = getattr(self, "_published", ("", []))
        placed = [item for item in items if item.target is not None]
        return operator_lineage(
            [f"s3://{bucket}/{item.key}" for item in placed],
            [f"s3://{bucket}/{item.target}" for item in placed],
            [item.record for item in items],
        )


def _stored_key(record: Mapping[str, Any], name: str, what: str, bucket: str, source_prefix: str) -> str:
    """The record's ``<name>_key``, checked to lie inside the transfer's prefix and to be the
    object its ``<name>_uri`` names in ``bucket`` (a file or a poster frame: ``what``)."""
    generation_id = record.get("generation_id") or "?"
    key = str(record[f"{name}_key"])
    check_key(key, source_prefix, what=f"{name}_key of record {generation_id}", refusing=_REFUSING)
    uri = record.get(f"{name}_uri")
    if uri is not None and uri != f"s3://{bucket}/{key}":
        raise OxenKeyError(
            f"Record {generation_id} names {what} {uri!r}, which is not {key!r} in bucket {bucket!r} "
            f"(the bucket the transfer wrote); {_REFUSING}",
            field="records",
        )
    return key


def _regeneration(item: _Item, note: str) -> dict[str, Any]:
    """What the next run generates instead: the prompt with the note; a clip also its shape and length."""
    parameters = dict(item.record.get("parameters") or {})
    again = {
        "prompt": regeneration_prompt(str(item.record.get("prompt") or parameters.get("prompt", "")), note),
        "image_size": parameters.get("image_size"),
        "regenerates": item.generation_id,
    }
    if is_video(item.record):
        again.update(
            media_type="video",
            aspect_ratio=parameters.get("aspect_ratio"),
            duration=parameters.get("duration"),
        )
    return again


def _target_prefix(value: str | None, field: str) -> tuple[str, str]:
    prefix = normalise_prefix(value)
    if not prefix:
        raise OxenValidationError(f"{field} must not be empty (the bucket root); {_REFUSING}", field=field)
    return prefix, field


def _check_targets(items: Sequence[_Item]) -> None:
    """No file may be published over another's key, over an original, or onto itself."""
    sources = {item.key: item.generation_id for item in items}
    claimed: dict[str, str] = {}
    for item in items:
        for key in (item.target, item.other):
            if key in sources:
                raise OxenKeyError(
                    f"Publishing record {item.generation_id} could write or remove {key!r}, which is a "
                    f"stored file of record {sources[key]}; choose approved_prefix / rejected_prefix "
                    f"outside the transfer's keys; {_REFUSING}",
                    field="approved_prefix"
                    if (key == item.target) == (item.decision == APPROVE)
                    else "rejected_prefix",
                )
        if item.target is None:
            continue
        if item.target in claimed:
            raise OxenKeyError(
                f"Records {claimed[item.target]} and {item.generation_id} would both be published to "
                f"{item.target!r} (same file name); {_REFUSING}",
                field="records",
            )
        claimed[item.target] = item.generation_id
