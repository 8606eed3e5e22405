"""The value-chain tab's network drawing: where each node goes (pure geometry, no database, no markup).

The engaged company sits in the centre; its counterparties sit on rings around it, one ring per
tier (1 inside, 2, 3 and further outside). The template (templates/valuechain/_drawing.html) draws
the result as inline SVG: a circle for a counterparty, a diamond with "!" for a flagged one (a
diamond with "×" once exited), so a flag reads without colour; every node has a <title>.

Only a few nodes fit: the flagged ones first (up to MAX_FLAGGED), then the others (up to
MAX_OTHERS); the drawing says how many it leaves out, and the table below it lists them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Flagged counterparties drawn at most (all of them in any map seen so far; the rest are counted).
MAX_FLAGGED = 24
#: Other counterparties drawn at most, after the flagged ones.
MAX_OTHERS = 12
#: Characters of a name shown under its node (the whole name is in its <title>).
LABEL_CHARS = 20
#: The drawing's side, in SVG units; the rings' radii are fractions of half of it.
SIZE = 640
RING_FRACTIONS = {1: 0.38, 2: 0.6, 3: 0.8}


@dataclass(frozen=True)
class Node:
    """One counterparty as the drawing needs it."""

    key: int
    name: str
    tier: int
    kind: str = "supplier"
    flagged: bool = False
    exited: bool = False
    #: Why it is flagged, for its <title> ("US Entity List (direct); in the Uyghur Region: Hotan").
    reason: str = ""


@dataclass(frozen=True)
class Placed:
    node: Node
    x: float
    y: float
    #: The shortened name shown under the node.
    label: str
    label_y: float

    @property
    def marker(self) -> str:
        """The text marker inside a flagged node: "!" while open, "×" once exited; "" for others."""
        if not self.node.flagged:
            return ""
        return "×" if self.node.exited else "!"

    @property
    def diamond(self) -> str:
        """The points of a flagged node's diamond (SVG polygon)."""
        r = 11
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in (
            (self.x, self.y - r), (self.x + r, self.y), (self.x, self.y + r), (self.x - r, self.y)))

    @property
    def title(self) -> str:
        tier = f"tier {self.node.tier}{'+' if self.node.tier >= 3 else ''}"
        text = f"{self.node.name} — {self.node.kind.replace('_', '-')}, {tier}"
        if self.node.flagged:
            text += f" — {'flagged, exited' if self.node.exited else 'flagged'}"
            if self.node.reason:
                text += f": {self.node.reason}"
        return text


@dataclass
class Drawing:
    size: int
    centre: float
    company: str
    company_label: str
    #: (tier, radius) of each ring drawn.
    rings: list[tuple[int, float]] = field(default_factory=list)
    nodes: list[Placed] = field(default_factory=list)
    #: Counterparties left out of the drawing, and how many of them are flagged.
    hidden: int = 0
    hidden_flagged: int = 0

    @property
    def flagged(self) -> list[Placed]:
        return [p for p in self.nodes if p.node.flagged]


def shorten(name: str, limit: int = LABEL_CHARS) -> str:
    name = " ".join(name.split())
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


def choose(flagged: list[Node], others: list[Node], *, max_flagged: int = MAX_FLAGGED,
           max_others: int = MAX_OTHERS) -> list[Node]:
    """The nodes drawn: the flagged ones first, then the others, each within its cap."""
    return flagged[:max_flagged] + others[:max_others]


def layout(company: str, nodes: list[Node], *, total: int | None = None, total_flagged: int | None = None,
           size: int = SIZE) -> Drawing:
    """Place `nodes` on one ring per tier around `company`.

    `total` and `total_flagged` are the map's counts (the nodes may be fewer): the difference is
    what the drawing says it leaves out. No node sits straight above the centre (the rings' labels
    are there), and each ring is turned a quarter step further than the one inside it, so nodes of
    neighbouring rings do not line up on one spoke.
    """
    centre = size / 2
    drawing = Drawing(size=size, centre=centre, company=company, company_label=shorten(company, 22))
    by_tier: dict[int, list[Node]] = {}
    for node in nodes:
        by_tier.setdefault(min(max(node.tier, 1), 3), []).append(node)
    for index, tier in enumerate(sorted(by_tier)):
        members = by_tier[tier]
        radius = centre * RING_FRACTIONS[tier]
        drawing.rings.append((tier, radius))
        step = 2 * math.pi / len(members)
        start = -math.pi / 2 + step * (0.5 if index % 2 == 0 else 0.25)
        for position, node in enumerate(members):
            angle = start + position * step
            x, y = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
            drawing.nodes.append(Placed(node=node, x=round(x, 1), y=round(y, 1), label=shorten(node.name),
                                        label_y=round(y + 24, 1)))
    shown_flagged = sum(1 for n in nodes if n.flagged)
    drawing.hidden = max((total if total is not None else len(nodes)) - len(nodes), 0)
    drawing.hidden_flagged = max((total_flagged if total_flagged is not None else shown_flagged) - shown_flagged, 0)
    return drawing
