"""Tokenizers of the real models: transformers' AutoTokenizer from the checkpoint directory (with
its chat template), and a byte tokenizer for random-weight runs that have no tokenizer files."""
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
