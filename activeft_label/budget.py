"""Parsing of annotation budgets given as a count (``"300"``) or a percentage (``"1%"``)."""

import math
import numbers

from .errors import InputError


def parse_budget(budget, pool_size, *, already_labeled=0):
    """Turn a budget into a number of items to select.

    Parameters
    ----------
    budget : int or str
        A positive count (``300`` or ``"300"``) or a percentage of the pool
        (``"0.5%"``).  Percentages round half up.
    pool_size : int
        Number of items in the pool, already labeled ones included.
    already_labeled : int, default=0
        Items of the pool that cannot be selected again (earlier rounds).

    Returns
    -------
    int
        The number of items to select, ``1 <= B <= pool_size - already_labeled``.
    """
    available = pool_size - already_labeled
    if isinstance(budget, bool):
        raise InputError(f"budget must be a count like 300 or a percentage like '1%', not {budget!r}")
    if isinstance(budget, numbers.Integral):
        count = int(budget)
        described = str(count)
    elif isinstance(budget, numbers.Real):
        if float(budget) != int(budget):
            raise InputError(f"budget {budget!r} is not a whole number; give a count like 300 or a percentage like '1%'")
        count = int(budget)
        described = str(count)
    elif isinstance(budget, str):
        text = budget.strip()
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                raise InputError(f"budget {budget!r} is not a percentage; write it like '1%' or '0.5%'") from None
            if not math.isfinite(percent) or percent <= 0:
                raise InputError(f"budget {budget!r} must be a percentage above 0, like '1%'")
            if percent > 100:
                raise InputError(f"budget {budget!r} is more than 100% of the pool")
            count = math.floor(pool_size * percent / 100.0 + 0.5)
            if count == 0:
                raise InputError(
                    f"budget {budget!r} of a pool of {pool_size} items rounds to 0 items; "
                    f"use a larger percentage or a count like 1"
                )
            described = f"{text} of {pool_size} = {count}"
        else:
            try:
                count = int(text)
            except ValueError:
                raise InputError(f"budget {budget!r} is neither a count like 300 nor a percentage like '1%'") from None
            described = str(count)
    else:
        raise InputError(f"budget must be a count like 300 or a percentage like '1%', not {budget!r}")

    if count <= 0:
        raise InputError(f"budget must be at least 1 item, got {described}")
    if count > available:
        extra = f" ({already_labeled} of {pool_size} are already labeled)" if already_labeled else ""
        raise InputError(
            f"budget {described} is larger than the {available} items available for selection{extra}; "
            f"lower the budget"
        )
    return count


def check_budget_form(budget):
    """Raise :class:`InputError` for a budget that no pool could meet (not a count or a percentage, ≤ 0, > 100%).

    Cheap, so commands call it before embedding; :func:`parse_budget` checks it against the pool afterwards.
    """
    parse_budget(budget, 2**62)
