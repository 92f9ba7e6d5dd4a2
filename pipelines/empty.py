"""The empty-output rule: an ingest that would commit no data from its sources fails unless ``allow_empty``.

An empty listing, a header-only CSV or a listing whose every line is rejected used to commit an empty dataset with
exit status 0. Two checks, both one sentence saying what to do:

* :func:`require_recordings` after a source is prepared: no recordings came out of it (before any Ray work);
* :func:`empty_output_message` after the units ran: the run would commit zero samples (the job then does not
  commit, prints the sentence, and exits non-zero).
"""

from __future__ import annotations

from collections import Counter

from manifests.rows import Reject

ALLOW = "pass --allow-empty (allow_empty: true in the config) to commit an empty dataset on purpose"


class EmptyDataset(ValueError):
    """A source or a run that would commit nothing; the message says why and how to proceed."""


def _reasons(rejects: list[Reject]) -> str:
    counts = Counter(r.reason for r in rejects)
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common())


def require_recordings(source: str, n_recordings: int, rejects: list[Reject], allow_empty: bool = False) -> None:
    """Raise :class:`EmptyDataset` when ``source`` gave no recordings (``rejects``: its prepare-stage rejects)."""
    if n_recordings or allow_empty:
        return
    if rejects:
        first = rejects[0]
        why = (f"all {len(rejects)} of its lines/files were rejected ({_reasons(rejects)}; the first: "
               f"{first.item}: {first.detail})")
    else:
        why = "it lists nothing (an empty listing, or a header and no lines?)"
    raise EmptyDataset(f"source {source} gave no recordings: {why}; fix the input, or {ALLOW}")


def empty_output_message(n_samples: int, n_recordings: int, rejects: list[Reject] | None = None,
                         allow_empty: bool = False) -> str | None:
    """The sentence to print (and not commit) when a run of ``n_recordings`` would commit zero samples, else None."""
    if n_samples or allow_empty:
        return None
    detail = f" (rejects: {_reasons(rejects)})" if rejects else ""
    return (f"no samples from {n_recordings} recordings{detail}: nothing to commit; see manifests/rejects.parquet "
            f"for why, or {ALLOW}")
