"""Stop-string cutting and chat rendering, shared by the decode stage and the lm-eval model."""
import dataclasses

import pytest

from bench.generate import cut_at_stops, render_prompt


def test_cut_at_the_earliest_stop_string_like_lm_eval():
    text = " 3 + 4 = 7.\n#### 7\n\nQuestion: next one</s>"
    assert cut_at_stops(text, ["Question:", "</s>", "<|im_end|>"]) == (" 3 + 4 = 7.\n#### 7\n\n", True)
    assert cut_at_stops("def f():\n    return 1\n[DONE] junk", ["[DONE]"]) == ("def f():\n    return 1\n", True)
    assert cut_at_stops("no stop here", ["Q:"]) == ("no stop here", False)
    assert cut_at_stops("a\nclass X\ndef y", ["\ndef", "\nclass"]) == ("a", True)
    assert cut_at_stops("abc", [""]) == ("abc", False)


def test_chat_rendering_uses_the_model_template(random_model):
    msgs = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
    assert render_prompt(random_model, "plain prompt", None) == "plain prompt"
    with pytest.raises(ValueError, match="has no chat template; use --chat none"):
        render_prompt(random_model, "", msgs)
    tmpl = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
    chat_model = dataclasses.replace(random_model, chat_template=tmpl)
    assert render_prompt(chat_model, "", msgs) == "<user>Q1</user><assistant>A1</assistant><user>Q2</user><assistant>"
