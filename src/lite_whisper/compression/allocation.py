"""Rank allocation to a budget: where rank goes matters more than how each linear is factorised.

Every linear has options (dense, or a rank in multiples of 16 below break-even), each with a
size (parameters or FLOPs) and an estimated cost (damage to the encoder's output). Starting
from all dense, the allocation walks each linear's lower convex hull of (size, cost), always
taking the step that adds the least cost per unit of size saved, until the total fits the
budget; then it spends any slack back where it removes the most cost. Pure functions, no model.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


class BudgetError(ValueError):
    """The budget cannot be met even with every linear at its smallest rank."""


@dataclass(frozen=True)
class Option:
    rank: int | None  # None: the linear stays dense
    size: int  # parameters (or FLOPs) of this linear with this option
    cost: float  # estimated damage; dense costs 0


def allocate(options: dict[Hashable, list[Option]], fixed: int, budget: float) -> dict[Hashable, Option]:
    """Choose one option per linear so that `fixed` + the sizes <= `budget`, at small total cost.

    `options[key]` must contain the dense option (rank None, cost 0). Raises BudgetError when even
    the smallest options do not fit. The result never exceeds the budget.
    """
    for key, choices in options.items():
        if not any(option.rank is None for option in choices):
            raise ValueError(f"{key}: the options must include dense (rank None)")
    choice = {key: next(o for o in choices if o.rank is None) for key, choices in options.items()}
    smallest = fixed + sum(min(o.size for o in choices) for choices in options.values())
    if smallest > budget:
        raise BudgetError(f"the budget {budget:.0f} is below {smallest:.0f}, the size with every linear at its "
                          "smallest rank (and everything that is not a linear)")
    total = fixed + sum(option.size for option in choice.values())

    def next_step(key):
        """The cheaper option reached with the least extra cost per unit saved (the hull's next vertex)."""
        current = choice[key]
        best = None
        for option in options[key]:
            if option.size < current.size:
                slope = (option.cost - current.cost) / (current.size - option.size)
                if best is None or slope < best[0] or (slope == best[0] and option.size < best[1].size):
                    best = (slope, option)
        return best

    steps = {key: next_step(key) for key in options}
    while total > budget:
        key = min((k for k in steps if steps[k] is not None), key=lambda k: steps[k][0])
        option = steps[key][1]
        total -= choice[key].size - option.size
        choice[key] = option
        steps[key] = next_step(key)

    # Spend the slack: undo the most cost per move that still fits, until nothing fits.
    while True:
        slack = budget - total
        best = None
        for key, choices in options.items():
            current = choice[key]
            for option in choices:
                grown = option.size - current.size
                if 0 < grown <= slack and option.cost < current.cost:
                    gain = current.cost - option.cost
                    if best is None or gain > best[0]:
                        best = (gain, key, option)
        if best is None:
            return choice
        _, key, option = best
        total += option.size - choice[key].size
        choice[key] = option
