"""Turning a built request into a model prompt, and a decoded text into the request's answer.

Shared by the decode stage (bench/runner.py) and the lm-eval model (bench/lm_eval_model.py), so
both produce the same text for the same request. Needs no lm-eval.
"""
from __future__ import annotations


def cut_at_stops(text: str, until: list[str]) -> tuple[str, bool]:
    """Cut at the earliest stop string, as lm-eval's models do (`text.split(term)[0]` per term)."""
    cut = text
    for term in until:
        if term:
            cut = cut.split(term)[0]
    return cut, cut != text


def render_prompt(model, prompt: str, messages: list[dict] | None) -> str:
    """The text the model sees: the plain prompt, or the chat messages in the model's template."""
    if messages is None:
        return prompt
    tok = model.tokenizer
    if hasattr(tok, "apply_chat_template"):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if getattr(model, "chat_template", None):
        import jinja2
        return jinja2.Template(model.chat_template).render(messages=messages, add_generation_prompt=True)
    raise ValueError(f"model {model.name!r} has no chat template; use --chat none")
