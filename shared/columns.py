"""Samples on a link as columns: one activation tensor for many samples, one packed entry each per field.

The sending tier :func:`pack` s the requests of one link message: those of one
model, resuming at one block, whose activations have one dtype (FP32 or FP16)
and one per-sample shape, become one ``ContinueColumns``; the rest travel as
``ContinueRequest`` s. Their activations are joined once into one tensor and
their plans, which the device's policies mostly repeat, are sent once each.

The receiving tier :func:`unpack` s a column into one
:class:`~splitexit.shared.pipeline.ColumnEntry` per sample: the column is
checked as a whole (its counts, its model and block, its tensor's dtype and
shape) and decoded once, then every sample's values are checked on its own row,
which stays a view of the message's bytes. A column wrong as a whole refuses
each of its samples under its id; a sample with bad values is refused alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.errors import InvalidInput, as_serving_error
from splitexit.shared.pipeline import ColumnEntry, Refused
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tensors import check_values, decode

STACKABLE = (pb.DATA_TYPE_FP32, pb.DATA_TYPE_FP16)  # dtypes whose tensors stack as they are (no per-sample scale)
ColumnKey = tuple[str, int, int, tuple[int, ...]]  # model, next block, dtype, one sample's shape


def pack(requests: Sequence[pb.ContinueRequest]) -> pb.ContinueBatch:
    """One link message for ``requests``: columns for every group of two or more that stack, requests for the rest."""
    groups: dict[ColumnKey, list[pb.ContinueRequest]] = {}
    batch = pb.ContinueBatch()
    for request in requests:
        key = _column_key(request)
        if key is None:
            batch.requests.append(request)
        else:
            groups.setdefault(key, []).append(request)
    for members in groups.values():
        if len(members) == 1:
            batch.requests.append(members[0])
        else:
            batch.columns.append(_columns(members))
    return batch


def _column_key(request: pb.ContinueRequest) -> ColumnKey | None:
    shape = tuple(request.activation.shape)
    if request.activation.dtype not in STACKABLE or not shape or shape[0] != 1 or not request.HasField("timeout_s"):
        return None
    return request.model, request.next_block, request.activation.dtype, shape[1:]


def _columns(members: list[pb.ContinueRequest]) -> pb.ContinueColumns:
    first = members[0]
    plans: dict[bytes, int] = {}
    plan_of = [plans.setdefault(m.policy.SerializeToString(deterministic=True), len(plans)) for m in members]
    return pb.ContinueColumns(
        model=first.model,
        next_block=first.next_block,
        activations=pb.Tensor(
            dtype=first.activation.dtype,
            shape=[len(members), *first.activation.shape[1:]],
            raw=b"".join(m.activation.raw for m in members),
        ),
        request_ids=[m.request_id for m in members],
        plans=[pb.Plan.FromString(plan) for plan in plans],
        plan_of=plan_of,
        top_k=[m.top_k for m in members],
        timeout_s=[m.timeout_s for m in members],
        forbid_degraded=[m.forbid_degraded for m in members],
    )


def unpack(
    columns: pb.ContinueColumns, model_of: Callable[[str], HostedModel], where: str
) -> list[ColumnEntry | Refused]:
    """One entry per sample of ``columns``, each a :class:`ColumnEntry` or, if it is refused, a :class:`Refused`."""
    ids = list(columns.request_ids)
    started = time.perf_counter()
    try:
        _check_counts(columns, len(ids))
        model = model_of(columns.model)
        model.check_resumable(columns.next_block)
        spec = model.manifest.block(columns.next_block).input
        what = f"the activations for block {columns.next_block}"
        x = decode(columns.activations, spec, what, rows=len(ids), values=False)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the column is each of its samples' error
        error = as_serving_error(exc, where)
        return [Refused(error, request_id, columns.model) for request_id in ids] or [Refused(error, "", columns.model)]
    codec_s = (time.perf_counter() - started) / len(ids)
    plans = [_plan(plan, model) for plan in columns.plans]
    entries: list[ColumnEntry | Refused] = []
    each = f"the activation for block {columns.next_block}"
    for i, request_id in enumerate(ids):
        row = x[i : i + 1]
        plan = plans[columns.plan_of[i]]
        try:
            if isinstance(plan, InvalidInput):
                raise plan
            check_values(row, spec, each)
        except InvalidInput as error:
            entries.append(Refused(error, request_id, columns.model))
            continue
        entries.append(
            ColumnEntry(
                model=columns.model,
                request_id=request_id,
                next_block=columns.next_block,
                x=row,
                plan=plan,
                top_k=columns.top_k[i] if columns.top_k else 0,
                timeout_s=columns.timeout_s[i] if columns.timeout_s else None,
                forbid_degraded=bool(columns.forbid_degraded) and columns.forbid_degraded[i],
                codec_s=codec_s,
            )
        )
    return entries


def _plan(plan: pb.Plan, model: HostedModel) -> Plan | InvalidInput:
    """A column's plan, parsed once for every sample that has it; or why it cannot be."""
    try:
        return Plan.from_proto(plan, model.manifest.num_blocks, TierThresholds.name)
    except InvalidInput as error:
        return error


def _check_counts(columns: pb.ContinueColumns, count: int) -> None:
    """Raise :class:`InvalidInput` unless every per-sample field has one entry per sample (or none, where allowed)."""
    if count == 0:
        raise InvalidInput("a ContinueColumns message carries no request_ids: it has no samples")
    if len(columns.plan_of) != count or not columns.plans:
        raise InvalidInput(
            f"a ContinueColumns message of {count} samples needs {count} plan_of entries and at least one plan, "
            f"got {len(columns.plan_of)} and {len(columns.plans)}"
        )
    if max(columns.plan_of) >= len(columns.plans):
        raise InvalidInput(
            f"plan_of names plan {max(columns.plan_of)}, but the ContinueColumns message has {len(columns.plans)}"
        )
    for name in ("top_k", "timeout_s", "forbid_degraded"):
        given = len(getattr(columns, name))
        if given not in (0, count):
            raise InvalidInput(
                f"{name} has {given} entries; a ContinueColumns message of {count} samples needs 0 or {count}"
            )
