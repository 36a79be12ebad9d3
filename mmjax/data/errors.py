"""Bad records: either fail naming where the record came from, or skip it and count why.

Two places meet bad data. Preparing a dataset (a JSONL line that is not JSON, a missing or corrupt image, an
empty or overlong caption) reports `file:line`. Reading one (a corrupt image in a TFDS dataset, a caption
longer than the tokenizer allows) reports `dataset/split[index]`, plus `file:line` when the record kept it.

Skipping inside a grain pipeline must survive worker processes, which cannot update a counter in the main
process. So a bad record becomes a `BadRecord` marker, and `DropBadRecords` removes markers and writes how
many it removed into the next good example (`num_skipped`); batches sum those; the main process totals.
Markers at the very end of a finite pass are carried by a placeholder example with `example_mask` 0.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import grain
import numpy as np
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


class DropBadRecords(grain.IterDataset):
    """Removes `BadRecord` markers, adding to every good example the number removed just before it."""

    def __init__(self, parent: grain.IterDataset):
        super().__init__(parent)

    def __iter__(self) -> _DropBadRecordsIterator:
        return _DropBadRecordsIterator(self._parent.__iter__())

    def __str__(self) -> str:
        return "DropBadRecords"


class _DropBadRecordsIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)
        # Markers seen since the last good example; part of the state so a restore never double-counts.
        self._pending = 0
        self._template = None  # the last good example, whose structure a placeholder copies

    def __next__(self) -> dict[str, Any]:
        while True:
            try:
                element = next(self._parent)
            except StopIteration:
                if not self._pending or self._template is None:
                    raise
                # Bad records at the very end have no good example to carry their count: emit a placeholder
                # (zeros, example_mask 0) that the batch consumer drops after reading the count.
                filler = {k: np.zeros_like(v) for k, v in self._template.items()}
                filler[SKIPPED_KEY], self._pending = np.int32(self._pending), 0
                return filler
            if not isinstance(element, BadRecord):
                element[SKIPPED_KEY], element[MASK_KEY] = np.int32(self._pending), np.int32(1)
                self._pending, self._template = 0, element
                return element
            self._pending += 1
            logging.warning("skipping bad record %s: %s", element.where, element.reason)

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "pending": self._pending}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._pending = int(state["pending"])
