"""Speed without changing results: CUDA graphs around the reference loop's own step
(decoding/loop.py). Entry point: `Decoder` (acceleration/decode.py)."""
from .decode import Decoder, decode  # noqa: F401
