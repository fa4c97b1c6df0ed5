"""What can become of a recipient: one word for the engine, the state, the reports and `status`."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A recipient's status. A ``str``, so it goes into SQL, JSON and Counters as its word."""

    PLANNED = "planned"  # a dry run would send it
    SENT = "sent"  # the API answered success: true
    FAILED = "failed"  # the API answered no about this recipient; resent only on request
    UNSENT = "unsent"  # the API surely did not act; a plain rerun sends it
    UNCERTAIN = "uncertain"  # the API may have acted; resent only on request
    INVALID = "invalid"  # the row cannot become a request (template error, no recipient id)
    DEFERRED = "deferred"  # in its quiet hours; a later run sends it
    SKIPPED = "skipped"  # filtered, a duplicate, or settled by an earlier run
    SENDING = "sending"  # in the state only: claimed, and no outcome recorded yet


# The order in which reports list the counts.
REPORTED = (
    Status.PLANNED,
    Status.SENT,
    Status.FAILED,
    Status.UNSENT,
    Status.UNCERTAIN,
    Status.INVALID,
    Status.DEFERRED,
    Status.SKIPPED,
)
# Recipients who did not get the message: listed by `status`, written to undelivered.csv, and
# any of them makes a finished run exit 1.
UNDELIVERED = frozenset({Status.FAILED, Status.UNSENT, Status.UNCERTAIN})
# In the state, the recipients `status` lists: those not delivered, and those claimed whose
# outcome is not recorded (a run going on, or one that died).
NOT_DELIVERED_IN_STATE = (Status.FAILED, Status.UNSENT, Status.UNCERTAIN, Status.SENDING)
