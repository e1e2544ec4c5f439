"""A tiny Qwen2 chat model saved to disk, loaded through the enhancer's real from_pretrained path.

No hub download: ``Qwen2Config`` with random weights (fixed torch seed), a
word-level tokenizer built with the ``tokenizers`` library, and Qwen's ChatML
chat template. Random weights say nothing useful, so the two vocabularies
decide what kind of nonsense comes out, deterministically:

* ``wordy``: only words; the special tokens' output rows are zeroed so the model
  never stops early: every answer is ``max_new_tokens`` words (the cleaner keeps it);
* ``junk``: only punctuation and digits (the cleaner refuses it: the original is kept).

``bench/bench_enhance.py`` uses ``build_chat_folder`` with Qwen2-0.5B sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = tuple((
    "a an the red blue golden misty quiet old tall small bright dark soft warm cold glowing ancient "
    "lighthouse cliff harbour mountain lake forest city street fox cat dog car boat bridge tower garden "
    "sunset dawn night rain fog snow light shadow sky sea river field flowers stone wood glass "
    "cinematic photographic detailed sharp focus dramatic lighting lens composition texture mood "
    "illustration minimal clean colour palette film still wide angle close up over under with and in on at"
).split())
JUNK = tuple("! ? # $ % & * + = ~ ^ | / ; : 0 1 2 3 4 5 6 7 8 9 ... -- ++ ## @@ %% && ** // ;;".split())
SYSTEM_WORDS = ("you", "rewrite", "prompts", "for", "image", "generator", "expand", "user's", "prompt", "into",
                "one", "vivid", "concrete", "of", "at", "most", "words", "that", "keeps", "every")

#: Qwen2.5's ChatML template, reduced to what the enhancer sends (system + user turns).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: Qwen2.5-0.5B-Instruct's architecture (config.json of the hub model), for the benchmark.
QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                 tie_word_embeddings=True)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)


def _byte_chars() -> list[str]:
    # The GPT-2 byte -> printable unicode map of the ByteLevel pre-tokenizer ("Ġ" is a space).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tokenizer(words: tuple[str, ...]) -> tuple[Any, list[int]]:
    """A byte-level BPE fast tokenizer like Qwen2's (every byte, plus " word" as one
    token for each of ``words``), with the ChatML specials and template. Returns it
    and the ids of the ``words`` tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> int:
        return vocab.setdefault(token, len(vocab))

    for ch in _byte_chars():
        add(ch)
    word_ids: list[int] = []
    for word in (*SYSTEM_WORDS, *words):
        symbols = ["Ġ", *word]
        current = symbols[0]
        for sym in symbols[1:]:
            if (current, sym) not in merges:
                merges.append((current, sym))
            current += sym
            add(current)
        if word in words:
            word_ids.append(vocab[current])
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer, word_ids


def build_chat_folder(folder: Path, *, kind: str = "wordy", sizes: dict[str, Any] | None = None,
                      seed: int = 0) -> Path:
    """Save a random-weights Qwen2 chat model (``kind``: wordy | junk) and its tokenizer to ``folder``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer, word_ids = build_tokenizer(WORDS if kind == "wordy" else JUNK)
    config_sizes = dict(sizes or TINY)
    config_sizes.setdefault("vocab_size", len(tokenizer))
    config_sizes["vocab_size"] = max(config_sizes["vocab_size"], len(tokenizer))
    config = Qwen2Config(**config_sizes, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        # Only the kind's own words (never a special, a system-prompt word or an id past
        # the tokenizer): the answer is always that vocabulary.
        head = model.get_output_embeddings().weight
        keep = torch.zeros(head.shape[0], dtype=torch.bool)
        keep[word_ids] = True
        if not config.tie_word_embeddings:
            # Zero rows give zero logits; among dozens of random word logits one is
            # positive (all negative: odds 2^-dozens), so a word always wins.
            head[~keep] = 0.0
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
