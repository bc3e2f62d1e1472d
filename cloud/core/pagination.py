"""Offset pagination for list routes: ``limit`` (capped) and ``offset``.

Every list route answers a `Page`: ``items``, the ``limit`` and ``offset``
used, and ``next_offset`` — the offset of the next page, or None on the last
one. Routes fetch ``limit + 1`` rows to know whether a next page exists, so no
``COUNT(*)`` runs per request: ``rows = query(limit=paging.fetch(), ...)``,
then ``return paging.answer(rows, ItemRead.model_validate)``. Offsets are
simple and stateless (any API worker answers any page); a list that grows at
its head while a client pages (new dead letters) can repeat an item at a page
boundary, which the documentation says (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "Page", "Paging", "PagingDep"]

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# Deep offsets cost the database a scan of everything skipped; nobody pages
# through a million rows by hand — filter instead.
MAX_OFFSET = 100_000

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Paging:
    """A validated page request."""

    limit: int
    offset: int

    def fetch(self, cap: int | None = None) -> int:
        """Rows to ask for: one more than the page, to know whether a next one exists.

        Args:
            cap: the most a service hands back at once; at the cap a full
                page may be the last, and `page` then offers a next one.
        """
        return self.limit + 1 if cap is None else min(self.limit + 1, cap)

    def page(self, rows: Sequence[ItemT], cap: int | None = None) -> tuple[list[ItemT], int | None]:
        """Cut the `fetch` rows fetched to the page; the next offset or None."""
        more = len(rows) > self.limit or (cap is not None and len(rows) == cap)
        return list(rows[: self.limit]), (self.offset + self.limit if more else None)

    def answer(
        self, rows: Sequence[RowT], item: Callable[[RowT], ItemT], cap: int | None = None
    ) -> Page[ItemT]:
        """The `Page` of the `fetch` rows fetched, each turned into its answer by `item`."""
        kept, next_offset = self.page(rows, cap)
        return Page(
            items=[item(row) for row in kept],
            limit=self.limit,
            offset=self.offset,
            next_offset=next_offset,
        )


def _paging(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")
    ] = DEFAULT_LIMIT,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Items to skip: the previous next_offset.")
    ] = 0,
) -> Paging:
    return Paging(limit=limit, offset=offset)


PagingDep = Annotated[Paging, Depends(_paging)]


class Page(BaseModel, Generic[ItemT]):
    """One page of a list."""

    items: list[ItemT]
    limit: int
    offset: int
    next_offset: int | None
