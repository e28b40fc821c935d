"""baichuan_cpp.pipeline: the openMind / transformers text-generation pipeline contract."""
import threading

import pytest

import baichuan_cpp
from conftest import until_eos


@pytest.fixture(scope="module")
def pipe(model):
    return baichuan_cpp.pipeline(task="text_generation", model=model)


def test_greedy_matches_official(pipe, model, golden):
    for p in golden["prompts"]:
        want = model.detokenize(until_eos(p["greedy"]))
        out = pipe(p["text"], do_sample=False, max_new_tokens=len(p["greedy"]))
        assert out == [{"generated_text": p["text"] + want}]  # return_full_text defaults to True
        out = pipe(p["text"], do_sample=False, max_new_tokens=len(p["greedy"]), return_full_text=False)
        assert out == [{"generated_text": want}]


def test_loads_from_a_path(tiny_path, golden):
    p = golden["prompts"][0]
    pipe = baichuan_cpp.pipeline(task="text_generation", model=tiny_path, threads=1, kv_type="f32", max_new_tokens=24)
    assert isinstance(pipe.model, baichuan_cpp.Model) and pipe.model.threads == 1
    want = pipe.model.detokenize(until_eos(p["greedy"]))
    assert pipe(p["text"], do_sample=False, return_full_text=False)[0]["generated_text"] == want


def test_list_of_prompts(pipe, golden):
    texts = [p["text"] for p in golden["prompts"][:3]]
    out = pipe(texts, do_sample=False, max_new_tokens=4, return_full_text=False)
    assert isinstance(out, list) and len(out) == 3
    for text, one in zip(texts, out):
        assert one == pipe(text, do_sample=False, max_new_tokens=4, return_full_text=False)


def test_conversation(pipe, model, golden):
    c = golden["chats"][1]
    want = model.detokenize(until_eos(c["greedy"]))
    out = pipe(c["messages"], do_sample=False, max_new_tokens=24)
    assert out == [{"generated_text": c["messages"] + [{"role": "assistant", "content": want}]}]
    assert pipe(c["messages"], do_sample=False, max_new_tokens=24, return_full_text=False) == [{"generated_text": want}]


def test_sampling_keywords(pipe):
    kw = dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.1, seed=3,
              max_new_tokens=8, return_full_text=False)
    assert pipe("hello", **kw) == pipe("hello", **kw)


def test_errors(model):
    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        baichuan_cpp.pipeline(task="summarization", model=model)
    with pytest.raises(ValueError, match="model="):
        baichuan_cpp.pipeline(task="text_generation")
    with pytest.raises(FileNotFoundError):
        baichuan_cpp.pipeline(task="text_generation", model="/nonexistent/model")
    pipe = baichuan_cpp.pipeline(task="text-generation", model=model)
    with pytest.raises(ValueError, match="max_new_tokens"):
        pipe("hello", max_new_tokens=-5)
    with pytest.raises(TypeError):
        pipe(42)


def test_concurrent_calls_equal_sequential_ones(pipe, golden):
    """Two threads calling one pipeline at the same time get what the same calls give one after the other."""
    jobs = [(p["text"], dict(do_sample=False, max_new_tokens=16, ignore_eos=True)) for p in golden["prompts"][:2]]
    jobs.append((golden["chats"][0]["messages"], dict(do_sample=True, seed=11, top_k=40, max_new_tokens=16)))
    sequential = [pipe(prompt, **kw) for prompt, kw in jobs]
    results = [[None] * len(jobs) for _ in range(2)]
    barrier = threading.Barrier(2)

    def worker(w):
        barrier.wait()
        order = list(range(len(jobs)))[:: 1 if w == 0 else -1]  # different prompts at once
        for _ in range(2):
            for i in order:
                results[w][i] = pipe(jobs[i][0], **jobs[i][1])

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == sequential and results[1] == sequential
