"""@tag parsing and keyword inference over free text.

Confidence is absolute, in [0, 1), and comparable across inputs:

    confidence = 1 - prod(1 - EVIDENCE * w_i)   over the distinct keywords hit

with w = 1.0 (primary), 0.8 (specific), 0.6 (secondary) and EVIDENCE = 0.7. One
primary hit gives 0.70, one specific 0.56, one secondary 0.42; two primary hits
0.91. Repeating the same word adds nothing, and no amount of evidence reaches 1.0
(explicit @tags are reported with confidence 1.0).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

from comfy_gen.categories.model import Category

KEYWORD_WEIGHTS: dict[str, float] = {"primary": 1.0, "specific": 0.8, "secondary": 0.6}
EVIDENCE = 0.7
DEFAULT_WEIGHT = 1.0
MAX_WEIGHT = 2.0

# "@name" or "@name:1.5"; not inside words or e-mail addresses ("me@example.com").
TAG_RE = re.compile(r"(?<![\w@])@([A-Za-z_][A-Za-z0-9_-]*)(?::(\d+(?:\.\d*)?|\.\d+))?")


@dataclass(frozen=True)
class TagMention:
    """One @tag in the input, before resolution."""

    tag: str            # lower-cased name as written
    weight: float       # 0..2 (clamped), default 1.0
    raw: str            # the text matched, e.g. "@night:1.5"
    clamped: bool = False


@dataclass(frozen=True)
class ParsedInput:
    tags: tuple[TagMention, ...]
    remaining: str      # the input with tags removed, whitespace collapsed


@dataclass(frozen=True)
class Inferred:
    """A category suggested by keywords in the free text."""

    id: str
    confidence: float
    matched: tuple[str, ...] = field(default_factory=tuple)


def parse_tags(text: str) -> ParsedInput:
    """Split ``text`` into @tag mentions and the remaining free text."""
    tags = []
    for m in TAG_RE.finditer(text):
        name = m.group(1).rstrip("-").lower()
        weight, clamped = DEFAULT_WEIGHT, False
        if m.group(2) is not None:
            value = float(m.group(2))
            weight = min(max(value, 0.0), MAX_WEIGHT)
            clamped = weight != value
        tags.append(TagMention(tag=name, weight=weight, raw=m.group(0), clamped=clamped))
    return ParsedInput(tags=tuple(tags), remaining=clean_text(TAG_RE.sub(" ", text)))


def clean_text(text: str) -> str:
    """Collapse whitespace, drop space before punctuation and dangling separators."""
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;])(?:\s*[,;])+", r"\1", text)
    return text.strip(" ,;")


def normalize(text: str) -> str:
    """Lower-case words separated by single spaces ("Close-up  Portrait" -> "close up portrait")."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower()).split())


def phrase_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word match of a (possibly multi-word) keyword; a plural s/es also matches."""
    words = normalize(keyword).split()
    body = r"\s+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![a-z0-9']){body}(?:e?s)?(?![a-z0-9'])")


def confidence(weights: Iterable[float]) -> float:
    """Combine distinct keyword hits into an absolute confidence (see module docstring)."""
    miss = math.prod(1.0 - EVIDENCE * w for w in weights)
    # Rounded for stable JSON; capped so rounding never turns strong evidence into 1.0.
    return min(round(1.0 - miss, 4), 0.9999)


def infer(text: str, categories: Iterable[Category], *, min_confidence: float = 0.3,
          exclude: Iterable[str] = ()) -> list[Inferred]:
    """Categories whose keywords occur in ``text``, most confident first (ties: priority, id)."""
    norm = normalize(text)
    skip = set(exclude)
    if not norm:
        return []
    out: list[tuple[float, int, str, Inferred]] = []
    for cat in categories:
        if cat.id in skip:
            continue
        hits = {kw: w for kw, w in cat.keyword_weights().items() if phrase_pattern(kw).search(norm)}
        if not hits:
            continue
        conf = confidence(hits.values())
        if conf < min_confidence:
            continue
        matched = tuple(sorted(hits, key=lambda k: (-hits[k], k)))
        out.append((-conf, -cat.priority, cat.id, Inferred(cat.id, conf, matched)))
    return [item for *_, item in sorted(out, key=lambda t: t[:3])]
