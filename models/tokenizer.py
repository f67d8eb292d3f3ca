"""Word/digit tokenizer of the built-in model.

Tokens are whole words, single digits and single punctuation marks, each with or without one
leading space (" apples", "apples", " 1", "1"), plus "\\n". Digits are single tokens so that the
model does arithmetic digit by digit. Words outside the vocabulary fall back to single letters,
so any ASCII text encodes; other characters become <unk>. decode(encode(s)) == s for ASCII s
without runs of spaces.
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path

SPECIALS = ["<pad>", "<mask>", "<eos>", "<unk>"]
_PIECE = re.compile(r" ?(?:\d|[A-Za-z]+|[^\w\s])|\n| ")


class WordTokenizer:
    def __init__(self, tokens: list[str]):
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"tokenizer vocabulary must start with {SPECIALS}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.mask_id, self.eos_id, self.unk_id = range(len(SPECIALS))

    @classmethod
    def build(cls, words: set[str]) -> "WordTokenizer":
        base = list(string.digits) + list(string.punctuation) + list(string.ascii_letters)
        base += sorted(w for w in words if len(w) > 1)
        toks = list(SPECIALS) + ["\n", " "]
        for b in base:
            toks += [b, " " + b]
        return cls(toks)

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        return cls(json.loads(Path(path).read_text())["tokens"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"type": "word-digit", "tokens": self.tokens}, indent=0))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        pos = 0
        for m in _PIECE.finditer(text):
            if m.start() != pos:  # characters the pattern does not cover (non-ASCII)
                ids.append(self.unk_id)
            pos = m.end()
            piece = m.group(0)
            if piece in self.index:
                ids.append(self.index[piece])
                continue
            lead = " " if piece.startswith(" ") else ""
            word = piece[len(lead):]
            ids.append(self.index.get(lead + word[0], self.unk_id))
            ids += [self.index.get(ch, self.unk_id) for ch in word[1:]]
        if pos != len(text):
            ids.append(self.unk_id)
        return ids

    def decode(self, ids, skip_special: bool = True) -> str:
        out = []
        for i in ids:
            i = int(i)
            if skip_special and i < len(SPECIALS):
                continue
            out.append(self.tokens[i])
        return "".join(out)
