"""The README's Python example on the shipped demo model (models/demo.gguf): the openMind-shaped
pipeline call answers the chat prompt greedily, and its answer is the arg-max continuation computed
token by token from the model's logits (a fresh forward pass per token, not the generation loop)."""
from pathlib import Path

import pytest

import baichuan_cpp

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo.gguf"
PROMPT = "<reserved_106>寫一首題為《春曉》的詩<reserved_107>"


@pytest.fixture(scope="module")
def demo_path():
    if not DEMO.exists():
        pytest.skip(f"{DEMO} is absent (scripts/train_demo.sh makes it)")
    return str(DEMO)


def test_readme_pipeline_call(demo_path):
    pipe = baichuan_cpp.pipeline(task="text_generation", model=demo_path)
    out = pipe(PROMPT, do_sample=False, max_new_tokens=48)
    assert isinstance(out, list) and len(out) == 1
    text = out[0]["generated_text"]
    assert text.startswith(PROMPT)
    answer = text[len(PROMPT):]
    assert "\n" in answer, f"no author line: {answer!r}"

    # The same answer from the logits alone: arg-max, append, repeat; stop at EOS.
    model = baichuan_cpp.Model(demo_path, threads=2)
    ids = model.tokenize(PROMPT)
    new = []
    for _ in range(48):
        logits = model.logits(ids + new)
        best = max(range(len(logits)), key=logits.__getitem__)
        if best == 2:
            break
        new.append(best)
    assert model.detokenize(new) == answer
