"""Turning a chat model's answer into one usable prompt line (pure, no model).

Small instruction models wrap the prompt in chatter ("Here is an enhanced
prompt:", quotes, markdown, a ``<think>`` block from reasoning models such as
DeepSeek-R1); random or broken models produce noise. ``clean_output`` keeps the
prompt or returns None, and the caller then keeps the user's own prompt.
"""

from __future__ import annotations

import re
import unicodedata

#: Longest enhanced prompt kept (characters); longer answers are cut at a word boundary.
MAX_CHARS = 600
#: Fewest words an answer needs to count as a prompt.
MIN_WORDS = 3

_THINK = re.compile(r"<think>.*?(</think>|$)", re.IGNORECASE | re.DOTALL)
# A line that only announces the prompt: "Here is the enhanced prompt:", "Sure! ...:", "Enhanced prompt:".
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|okay|ok|of course)\b[^\n]*|here(?:'s| is| are)\b[^\n]*|"
    r"(?:the\s+)?(?:enhanced|improved|rewritten|new|final)?\s*prompt\s*)[:!.]?\s*$", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:enhanced|improved|rewritten|final)?\s*prompt(?:\*\*)?\s*:\s*", re.IGNORECASE)
_WRAP = "\"'`*_“”‘’「」 \t"


def clean_output(text: str | None, *, max_chars: int = MAX_CHARS) -> str | None:
    """The first prompt-like line of ``text``, unquoted and bounded, or None for junk."""
    if not text:
        return None
    text = _THINK.sub("", text)
    # Control and private-use characters (and the replacement char of bad decoding) are never prompt text.
    text = "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = text.replace("\ufffd", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("```") or _PREAMBLE.match(line):
            continue
        line = _LABEL.sub("", line).strip().strip(_WRAP).strip()
        line = re.sub(r"^[-*•]\s+", "", line)
        line = re.sub(r"\s+", " ", line)
        if not line:
            continue
        line = _bound(line, max_chars)
        return line if _prompt_like(line) else None
    return None


def _bound(line: str, max_chars: int) -> str:
    if len(line) <= max_chars:
        return line
    cut = line[:max_chars]
    for sep in (", ", " "):  # end on a phrase, else a word, never mid-word
        at = cut.rfind(sep)
        if at > max_chars // 2:
            return cut[:at].rstrip(" ,;")
    return cut


def _prompt_like(line: str) -> bool:
    """Enough real words, mostly letters: noise from a broken model is refused."""
    words = [w for w in re.split(r"[\s,;]+", line) if w]
    wordy = [w for w in words if sum(ch.isalpha() for ch in w) >= max(1, len(w) // 2)]
    letters = sum(ch.isalpha() for ch in line)
    return len(wordy) >= MIN_WORDS and letters >= 0.6 * len(line.replace(" ", ""))
