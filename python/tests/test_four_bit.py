"""The official 4-bit Chat layout (bitsandbytes NF4, ../shared/reference/b2-7b-tiny-4bits) through the
binding and the pipeline: the same golden outputs as the float checkpoint, from the same code paths."""
import pytest

import baichuan_cpp
from conftest import exact_model, golden_logits, max_relative_error, read_golden, reference_path, until_eos


@pytest.fixture(scope="module")
def four_bit_path():
    return reference_path("b2-7b-tiny-4bits")


@pytest.fixture(scope="module")
def four_bit_golden(four_bit_path):
    return read_golden(four_bit_path)


@pytest.fixture(scope="module")
def four_bit(four_bit_path):
    return exact_model(four_bit_path)


def test_reads_the_release_layout(four_bit):
    assert four_bit.vocab_size == 125696
    assert four_bit.config["hidden_size"] == 32 and four_bit.config["position"] == "rope"


def test_tokens_and_chat_prompt_match_official(four_bit, four_bit_golden):
    for p in four_bit_golden["prompts"]:
        assert four_bit.tokenize(p["text"]) == p["ids"], p["text"]
    for c in four_bit_golden["chats"]:
        assert four_bit.chat_ids(c["messages"]) == c["ids"]


def test_logits_match_official(four_bit, four_bit_golden, four_bit_path):
    for p in four_bit_golden["prompts"]:
        assert max_relative_error(four_bit.logits(p["ids"]), golden_logits(four_bit_path, p)) <= 1e-5, p["text"]


def test_greedy_and_chat_match_official(four_bit, four_bit_golden):
    for p in four_bit_golden["prompts"]:
        four_bit.generate(p["text"], do_sample=False, max_new_tokens=len(p["greedy"]))
        assert four_bit.last_result["tokens"] == until_eos(p["greedy"]), p["text"]
    for c in four_bit_golden["chats"]:
        answer = four_bit.chat(c["messages"], do_sample=False, max_new_tokens=len(c["greedy"]))
        assert four_bit.last_result["tokens"] == until_eos(c["greedy"])
        assert answer == four_bit.detokenize(until_eos(c["greedy"]))


def test_pipeline_from_the_folder(four_bit_path, four_bit_golden):
    pipe = baichuan_cpp.pipeline(task="text_generation", model=four_bit_path, threads=1, kv_type="f32")
    for p in four_bit_golden["prompts"]:
        want = pipe.model.detokenize(until_eos(p["greedy"]))
        out = pipe(p["text"], do_sample=False, max_new_tokens=len(p["greedy"]), return_full_text=False)
        assert out == [{"generated_text": want}], p["text"]
    c = four_bit_golden["chats"][0]
    out = pipe(c["messages"], do_sample=False, max_new_tokens=len(c["greedy"]))
    assert out[0]["generated_text"][-1] == {"role": "assistant",
                                            "content": pipe.model.detokenize(until_eos(c["greedy"]))}
