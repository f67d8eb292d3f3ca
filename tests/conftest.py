import pytest
import torch

from models.base import ModelAdapter
from models.tiny_net import TinyConfig, TinyDLLM
from models.tokenizer import WordTokenizer
from tasks.arith import test_problems

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def random_model() -> ModelAdapter:
    """A small random-weight model with the built-in tokenizer's layout (fast, no EOS bias)."""
    tok = WordTokenizer.build({"Question", "Answer", "has", "apples"})
    torch.manual_seed(0)
    net = TinyDLLM(TinyConfig(vocab_size=len(tok), d_model=32, n_layers=2, n_heads=2, d_ff=64)).eval()
    return ModelAdapter(name="random-tiny", module=net, tokenizer=tok, mask_id=tok.mask_id, pad_id=tok.pad_id,
                        eos_ids=(tok.eos_id,))


@pytest.fixture(scope="session")
def builtin_model() -> ModelAdapter:
    from models import load_model
    return load_model("tiny")


@pytest.fixture(scope="session")
def prompts():
    return [p.prompt for p in test_problems(6)]
