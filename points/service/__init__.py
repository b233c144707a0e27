"""Service records: submit, approve, reject, verify; the earning pipeline; star levels.

Public: record_service(volunteer_id, kind, started_at, minutes=None, details=None, *,
actor, idempotency_key=None, review_reason=None) -> RecordResult (a review_reason
(zh, en) queues the record for the office whatever the approval policy says);
approve(record_id, actor) -> RecordResult;
reject(record_id, actor, reason) -> RecordResult; mark_verified(record_id, actor) ->
RecordResult; get_record(record_id) -> RecordResult; records_of_node(district, *,
status, kind, volunteer_id, since, until, oldest_first, after_id, limit) ->
list[RecordResult] (newest first unless oldest_first); volunteer_info(volunteer_id, policy=None)
-> VolunteerInfo; star_level(minutes, district=None) -> int; expiring_soon(volunteer_id,
as_of=None) -> list[tuple[int, datetime]]; evaluate(pm, policy, record, volunteer,
history) -> Evaluation (pure: used by approval and by preview alike);
preview_policy(district, plugin, config, *, start, end, locked=(), enabled=None) ->
Preview.

Earning: `award_points` proposes, `award_bonuses` adds on top, `limit_awards` clips
(the lowest ceiling wins, bonuses are clipped before base awards), `review_record`
decides approve-now or queue. Approval posts one earn entry per award with points,
each naming its plugin, rule, config version and reason, and counts the record's
minutes once, all in one unit of work: a plugin that fails leaves nothing behind.
On PostgreSQL a record without an idempotency key is read in autocommit and written by
one call that checks what it read (`_record_in_one_call`); elsewhere it takes the
locked path, one unit of work that locks the volunteer first.

Split by job: `evaluation` (what the plugins make of one record: awards, limits, the
approval decision; writes nothing), `reading` (records, volunteers and their history as
plugins see them, star levels, expiring points), `submission` (record_service and its
one-call path), `decisions` (the office's approve, reject, mark_verified), `posting`
(earn entries and minutes for a record's awards, and their listeners, shared by
submission and decisions) and `preview` (a policy draft's evaluation over past records).
Each imports `points.policy`; the policy module imports none of them.
"""

from points.service.decisions import approve, mark_verified, reject
from points.service.evaluation import Evaluation, apply_limits, evaluate
from points.service.preview import Preview, PreviewRow, preview_policy
from points.service.reading import (
    RecordResult,
    expiring_soon,
    get_record,
    history_for,
    past_record,
    records_of_node,
    star_level,
    volunteer_info,
)
from points.service.submission import (
    FUTURE_SLACK,
    ONE_CALL_ATTEMPTS,
    policy_zone,
    record_service,
)

__all__ = [
    "FUTURE_SLACK",
    "ONE_CALL_ATTEMPTS",
    "Evaluation",
    "Preview",
    "PreviewRow",
    "RecordResult",
    "apply_limits",
    "approve",
    "evaluate",
    "expiring_soon",
    "get_record",
    "history_for",
    "mark_verified",
    "past_record",
    "policy_zone",
    "preview_policy",
    "record_service",
    "records_of_node",
    "reject",
    "star_level",
    "volunteer_info",
]
