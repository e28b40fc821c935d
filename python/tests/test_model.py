"""baichuan_cpp.Model against the official code's golden outputs, and its API contract."""
import array
import threading
import time

import pytest

import baichuan_cpp
from conftest import golden_logits, max_relative_error, until_eos


def test_properties(model, tiny_path):
    assert model.vocab_size == 125696
    assert model.context == 4096
    assert model.path == tiny_path
    assert model.config["hidden_size"] == 32 and model.config["position"] == "rope"
    assert model.generation_config["do_sample"] is True
    assert model.kv_type == "F32"
    assert "Baichuan 2" in repr(model)


def test_tokenize_matches_official(model, golden):
    for p in golden["prompts"]:
        assert model.tokenize(p["text"]) == p["ids"], p["text"]
        assert model.detokenize(p["ids"]) == p["text"]


def test_chat_prompt_matches_official(model, golden):
    for c in golden["chats"]:
        assert model.chat_ids(c["messages"]) == c["ids"]


def test_logits_match_official(model, golden, tiny_path):
    for p in golden["prompts"]:
        got = model.logits(p["text"])
        assert isinstance(got, array.array) and len(got) == model.vocab_size
        assert max_relative_error(got, golden_logits(tiny_path, p)) <= 1e-4, p["text"]
    assert model.logits(golden["prompts"][0]["ids"]) == model.logits(golden["prompts"][0]["text"])


def test_generate_greedy_matches_official(model, golden):
    for p in golden["prompts"]:
        want = until_eos(p["greedy"])
        text = model.generate(p["text"], do_sample=False, max_new_tokens=len(p["greedy"]))
        assert model.last_result["tokens"] == want, p["text"]
        assert text == model.detokenize(want)


def test_chat_greedy_matches_official(model, golden):
    for c in golden["chats"]:
        want = until_eos(c["greedy"])
        answer = model.chat(c["messages"], do_sample=False, max_new_tokens=len(c["greedy"]))
        assert model.last_result["tokens"] == want
        assert answer == model.detokenize(want)


def test_stream_concatenates_to_answer(model, golden):
    for c in golden["chats"]:
        answer = model.chat(c["messages"], do_sample=False, max_new_tokens=24)
        stream = model.chat(c["messages"], stream=True, do_sample=False, max_new_tokens=24)
        assert isinstance(stream, baichuan_cpp.TextStream) and stream.result is None
        pieces = list(stream)
        assert len(pieces) > 1 and all(pieces)
        assert "".join(pieces) == answer
        assert stream.result["text"] == answer
    p = golden["prompts"][2]
    assert "".join(model.generate(p["text"], stream=True, do_sample=False, max_new_tokens=24)) == \
        model.generate(p["text"], do_sample=False, max_new_tokens=24)


def test_chat_reuses_the_cache_across_turns(model):
    model.reset()
    turn1 = [{"role": "user", "content": "你好"}]
    answer = model.chat(turn1, do_sample=False, max_new_tokens=8)
    turn2 = turn1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "再说一遍"}]
    second = model.chat(turn2, do_sample=False, max_new_tokens=8)
    assert model.last_result["reused_prompt_tokens"] >= len(model.chat_ids(turn1))
    model.reset()
    assert model.chat(turn2, do_sample=False, max_new_tokens=8) == second
    assert model.last_result["reused_prompt_tokens"] == 0


def test_sampling_with_seed_repeats(model):
    kw = dict(do_sample=True, temperature=1.0, top_k=50, top_p=0.95, seed=7, max_new_tokens=12, ignore_eos=True)
    first = model.generate("hello", **kw)
    assert model.generate("hello", **kw) == first
    assert model.last_result["finish_reason"] == "length" and len(model.last_result["tokens"]) == 12


def test_zero_new_tokens_and_stop(model):
    assert model.generate("hello", max_new_tokens=0) == ""
    full = model.generate("hello", do_sample=False, max_new_tokens=12, ignore_eos=True)
    assert len(full) > 2
    cut = model.generate("hello", do_sample=False, max_new_tokens=12, ignore_eos=True, stop=full[1:3])
    assert cut == full[: full.index(full[1:3])] and model.last_result["finish_reason"] == "stop"


def test_errors(model, tiny_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        baichuan_cpp.Model(str(tmp_path / "missing"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    with pytest.raises(OSError):
        baichuan_cpp.Model(str(junk))
    with pytest.raises(ValueError, match="KV cache type"):
        baichuan_cpp.Model(tiny_path, kv_type="f8")
    with pytest.raises(ValueError, match="threads"):
        baichuan_cpp.Model(tiny_path, threads=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate("hello", max_new_tokens=-1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate("hello", do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="role"):
        model.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ValueError):
        model.chat([{"content": "no role"}])
    with pytest.raises(ValueError):
        model.chat([])
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        model.generate("hello", nonsense=1)
    with pytest.raises(TypeError, match="max_new_tokens"):
        model.generate("hello", max_new_tokens="many")
    with pytest.raises(ValueError, match="out of range"):
        model.detokenize([10**6])
    with pytest.raises(ValueError, match="empty"):
        model.generate("")
    with pytest.raises(ValueError, match="multiple of 32"):
        model.kv_type = "q8_0"  # the tiny model's heads are too small for Q8_0 blocks
    assert model.kv_type == "F32"
    small = baichuan_cpp.Model(tiny_path, threads=1, context=4)
    with pytest.raises(ValueError, match="context"):
        small.generate("The quick brown fox jumps over the lazy dog.")
    with pytest.raises(ValueError, match="more than the context of 4"):
        small.logits("The quick brown fox jumps over the lazy dog.")


def test_generation_releases_the_gil(tiny_path):
    """A Python thread keeps running while another thread is inside one long generate()."""
    m = baichuan_cpp.Model(tiny_path, threads=1)
    start = time.monotonic()
    m.generate("hello", do_sample=False, max_new_tokens=32, ignore_eos=True)
    n = max(32, min(4000, int(32 * 1.0 / (time.monotonic() - start))))  # about one second

    done = threading.Event()
    worker = threading.Thread(target=lambda: (m.generate("hello", do_sample=False, max_new_tokens=n,
                                                         ignore_eos=True), done.set()))
    samples = []
    t0 = time.monotonic()
    worker.start()
    while not done.is_set():
        samples.append(time.monotonic())
    worker.join()
    duration = time.monotonic() - t0
    gaps = [b - a for a, b in zip(samples, samples[1:])]
    assert duration > 0.3, "generation too quick to tell"
    assert len(samples) > 1000 and max(gaps) < duration / 3, (len(samples), max(gaps), duration)


def test_threads_sharing_a_model_run_at_once(model, golden):
    """Calls from several threads on one Model, each in a session of its own, give the official answers."""
    chats = golden["chats"][:3]
    answers = {}

    def run(i):
        for _ in range(3):
            answers[i] = model.chat(chats[i]["messages"], do_sample=False, max_new_tokens=8)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(chats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [answers.get(i) for i in range(len(chats))] == [model.detokenize(until_eos(c["greedy"])[:8]) for c in chats]


def test_a_stream_keeps_its_session(model):
    """Another generation while a stream is unfinished runs beside it and does not change its text."""
    kw = dict(do_sample=False, max_new_tokens=20, ignore_eos=True)
    whole = model.generate("hello", **kw)
    stream = model.generate("hello", stream=True, **kw)
    first = next(stream)
    model.generate("The quick brown fox", do_sample=False, max_new_tokens=4)
    model.reset()
    assert first + "".join(stream) == whole
    assert stream.result["text"] == whole
