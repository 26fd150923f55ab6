"""The clock-skew rule, sans I/O: what to do when a signed request comes back
``RequestExpired`` (the signature's timestamp is too far from the service's clock).

The answer carries the service's ``Date``. ``skew_decision`` says whether to sign the
request again and with which offset (seconds added to the local clock when signing):

- another request already moved the offset since this one was signed: sign again with it;
- else learn the offset from this answer's ``Date`` (the service's time minus the local
  time the answer arrived), unless the ``Date`` is missing or unreadable, is more than
  ``MAX_CLOCK_OFFSET`` off (a broken header, not skew), or agrees with the offset already
  used to within ``SKEW_THRESHOLD_SECONDS`` (signing again would be refused again);
- never more than ``MAX_RESIGNS`` times for one request, and never for another error.

The caller reads the clock, keeps the offset, signs and sends; nothing here does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ApiError

__all__ = [
    "MAX_CLOCK_OFFSET",
    "MAX_RESIGNS",
    "SKEW_THRESHOLD_SECONDS",
    "SkewDecision",
    "SkewVerdict",
    "skew_decision",
]

MAX_CLOCK_OFFSET = 86400.0
"""A server ``Date`` further than this from the local clock is never adopted."""
MAX_RESIGNS = 3
"""Times one request is signed again and resent after ``RequestExpired``."""
SKEW_THRESHOLD_SECONDS = 30.0
"""A ``Date`` offset closer than this to the one used is not a new offset."""

_EXPIRED = "RequestExpired"


class SkewVerdict(enum.Enum):
    """Why a ``RequestExpired`` answer is resent or not."""

    RESEND = "resend"
    """Another answer moved the offset since this request was signed: sign again with it."""
    LEARNT = "learnt"
    """The answer's ``Date`` gives a new offset: sign again with it, and keep it."""
    NOT_EXPIRED = "not-expired"
    """Not a ``RequestExpired`` answer: the error stands."""
    TOO_MANY = "too-many"
    """This request was already signed again ``MAX_RESIGNS`` times."""
    NO_DATE = "no-date"
    """No ``Date`` header, or one that is not an HTTP date."""
    DATE_TOO_FAR = "date-too-far"
    """The ``Date`` is more than ``MAX_CLOCK_OFFSET`` from the local clock: not adopted."""
    SAME_OFFSET = "same-offset"
    """The ``Date`` agrees with the offset used: signing again would not help."""


@dataclass(frozen=True, slots=True)
class SkewDecision:
    """What to do with a refused request: ``verdict``, the ``offset`` to sign with from
    now on, and ``measured``, the offset this answer's ``Date`` shows (``None``: no
    ``Date`` was read)."""

    verdict: SkewVerdict
    offset: float
    measured: float | None = None

    @property
    def resign(self) -> bool:
        """Whether to sign the request again (with ``offset``) and resend it."""
        return self.verdict is SkewVerdict.RESEND or self.verdict is SkewVerdict.LEARNT

    @property
    def learnt(self) -> bool:
        """Whether ``offset`` is new, learnt from this answer's ``Date``."""
        return self.verdict is SkewVerdict.LEARNT


def skew_decision(
    error: ApiError,
    *,
    signed_with: float,
    offset: float,
    received_at: float,
    resigns: int = 0,
) -> SkewDecision:
    """Whether a request refused with ``error`` is signed again, and with which offset.

    ``signed_with`` is the offset the request was signed with, ``offset`` the one kept
    now (another answer may have moved it since), ``received_at`` the local epoch time
    the answer arrived, ``resigns`` how many times this request was signed again already.
    """
    if error.bce_error_code != _EXPIRED:
        return SkewDecision(SkewVerdict.NOT_EXPIRED, offset)
    if resigns >= MAX_RESIGNS:
        return SkewDecision(SkewVerdict.TOO_MANY, offset)
    if offset != signed_with:
        return SkewDecision(SkewVerdict.RESEND, offset)
    if error.server_date is None:
        return SkewDecision(SkewVerdict.NO_DATE, offset)
    measured = error.server_date.timestamp() - received_at
    if not abs(measured) <= MAX_CLOCK_OFFSET:
        # A server clock a day or more off is a broken or hostile header, not skew:
        # signing with it would fail (or not even format) from then on.
        return SkewDecision(SkewVerdict.DATE_TOO_FAR, offset, measured)
    if abs(measured - offset) < SKEW_THRESHOLD_SECONDS:
        return SkewDecision(SkewVerdict.SAME_OFFSET, offset, measured)
    return SkewDecision(SkewVerdict.LEARNT, measured, measured)
