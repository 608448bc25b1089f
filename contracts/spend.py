"""The spend ledger behind ``--max-spend-usd``: no create is sent that could pass the cap.

Every create is priced from the catalog before it is sent, and a create whose price would take
the total past the cap is never sent. A body the spec rejects is free (rejected inputs cost
nothing), so it is sent whatever the total. If a server accepts one anyway (or charges more
than the catalog), that run is counted at the most it can cost, the contract that sent it
fails, and from then on every create is reserved at the catalog's highest price: such a server
can take the total past the cap by one run at most (in catalog prices). Runs are counted at
their catalog price (or the ``costUsd`` the server reports, if higher); refunds of failed runs
are not deducted, so the total is an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MICRO", "Ledger", "SpendCapReached", "usd"]

MICRO = 1_000_000


def usd(micro: int) -> str:
    return f"${micro / MICRO:.3f}"


class SpendCapReached(Exception):
    """A create was refused because its worst-case cost would take the total past the cap.

    Properties turn it into a skip: nothing was sent, so nothing is known.
    """


@dataclass
class Ledger:
    cap: int | None  # micro-USD; None: count, never refuse
    spent: int = 0
    runs: int = 0
    refused: int = 0
    reserved: int = 0
    surprised: bool = False  # a body the spec rejects was accepted: price everything fully

    def reserve(self, micro: int, what: str) -> int:
        """Hold ``micro`` for one create, or raise ``SpendCapReached``."""
        if self.cap is not None and self.spent + self.reserved + micro > self.cap:
            self.refused += 1
            raise SpendCapReached(
                f"{what} could cost {usd(micro)}; {usd(self.spent)} of the {usd(self.cap)} cap "
                "is spent, so it was not sent"
            )
        self.reserved += micro
        return micro

    def settle(self, held: int, charged: int | None) -> None:
        """Release a reservation; ``charged`` is the cost of the run created, None if none was."""
        self.reserved -= held
        if charged is not None:
            self.spent += charged
            self.runs += 1

    def summary(self) -> str:
        cap = f" of the {usd(self.cap)} cap" if self.cap is not None else ""
        refused = f"; {self.refused} creates refused by the cap" if self.refused else ""
        return (
            f"Spent {usd(self.spent)}{cap}: {self.runs} runs created at catalog prices "
            f"(refunds not deducted){refused}"
        )
