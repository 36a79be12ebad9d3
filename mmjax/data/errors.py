"""Bad records: either fail naming where the record came from, or skip it and count why.

Two places meet bad data. Preparing a dataset (a JSONL line that is not JSON, a missing, corrupt or too short
image, video or sound, an empty or overlong caption) reports `file:line`. Reading one (a corrupt image in a TFDS
dataset, a caption longer than the tokenizer allows) reports `dataset/split[index]`, plus `file:line` when the
record kept it.

Skipping inside the input pipeline must not move any other example (the global batch sequence is a function
of (seed, step) alone) and must survive worker processes, which cannot update a counter in the main process.
So a bad record becomes a `BadRecord` marker, and the pipeline (`mmjax.data.pipeline`) gives its slot a
stand-in: in training the next good record of the same epoch's order, in evaluation a placeholder row with
`example_mask` 0. Each row carries `num_skipped` (1 for a stand-in), which the iterator totals.
"""

from __future__ import annotations

import collections
import dataclasses

from absl import logging

POLICIES = ("skip", "fail")
SKIPPED_KEY = "num_skipped"
MASK_KEY = "example_mask"


class BadRecordError(ValueError):
    """A record that cannot be used; the message starts with where it is (`file:line` or `name/split[i]`)."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """Marker standing in for a skipped record inside a pipeline."""

    where: str
    reason: str


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"data.bad_records: expected one of {POLICIES}, got {policy!r}")
    return policy


class BadRecordLog:
    """Applies a policy to bad records found while preparing a dataset; counts skipped ones by reason."""

    def __init__(self, policy: str):
        self.policy = check_policy(policy)
        self.counts: collections.Counter[str] = collections.Counter()

    def report(self, where: str, reason: str) -> None:
        if self.policy == "fail":
            raise BadRecordError(where, reason + " (set data.bad_records='skip' to skip such records)")
        self.counts[reason.split(":")[0]] += 1
        logging.warning("skipping bad record %s: %s", where, reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
