"""Small helpers shared by the decode-loop and method tests."""
from decoding.base import GenConfig
from decoding.registry import build_method, parse_methods

GEN = GenConfig(gen_length=24, block_length=8, early_stop=False)


def method(spec, gen=GEN):
    """Build one method from a command-line spec, e.g. method("threshold:tau=0.5")."""
    return build_method(parse_methods(spec)[0], gen)


def encode(model, prompts):
    return [model.tokenizer.encode(p) for p in prompts]
