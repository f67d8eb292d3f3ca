"""Tokenizers of the real models: transformers' AutoTokenizer from the checkpoint directory (with
its chat template), a byte tokenizer for random-weight runs that have no tokenizer files, and
MissingTokenizer for a directory of real weights without tokenizer files: the model loads and
decodes token ids; only turning text into ids or back raises, naming the directory and the fix."""
from __future__ import annotations

from pathlib import Path


class HFTokenizer:
    """AutoTokenizer from the same directory as the weights; encode adds no special tokens (the
    prompt text or the chat template carries them)."""

    def __init__(self, path: str | Path):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ValueError("loading a real checkpoint's tokenizer needs transformers: pip install transformers") from None
        self.tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
        self.chat_template = getattr(self.tok, "chat_template", None)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids, skip_special: bool = True) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special)

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = True):
        """The messages in the checkpoint's template: text, or ids with tokenize=True (transformers'
        signature, which bench/generate.py calls)."""
        return self.tok.apply_chat_template(messages, tokenize=tokenize, add_generation_prompt=add_generation_prompt)


# Files any transformers tokenizer is loaded from (fast, sentencepiece, BPE vocab).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / f).exists() for f in TOKENIZER_FILES)


class MissingTokenizer:
    """Stands for the tokenizer of a checkpoint directory that has none: ids-only use works."""
    chat_template = None

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _fail(self, *a, **k):
        raise ValueError(f"{self.path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...), and this "
                         f"run needs text; copy the checkpoint's tokenizer files there, or pass token ids")

    encode = decode = apply_chat_template = _fail


class ByteTokenizer:
    """For --no-weights runs without tokenizer files: UTF-8 bytes mapped to ids offset..offset+255
    (outputs of random weights decode to noise; accuracy is reported as not applicable)."""
    chat_template = None

    def __init__(self, offset: int = 16):
        self.offset = offset

    def encode(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode("utf-8")]

    def decode(self, ids, skip_special: bool = True) -> str:
        raw = bytes(i - self.offset for i in ids if self.offset <= i < self.offset + 256)
        return raw.decode("utf-8", errors="replace")
