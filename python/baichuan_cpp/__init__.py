"""Baichuan 2 on the CPU (baichuan.cpp) from Python.

    import baichuan_cpp
    pipe = baichuan_cpp.pipeline(task="text_generation", model="path/to/Baichuan2-7B-Chat")
    pipe("<reserved_106>你是谁?<reserved_107>", do_sample=False)  # [{"generated_text": ...}]

    model = baichuan_cpp.Model("path/to/checkpoint")
    model.chat([{"role": "user", "content": "你好"}])
    for piece in model.chat(messages, stream=True): print(piece, end="", flush=True)

See python/README.md for the keywords.
"""

from ._native import Model, TextStream
from ._native import __version__  # CMakeLists.txt's project version; pyproject.toml repeats it
__all__ = ["Model", "TextStream", "TextGenerationPipeline", "pipeline"]

TASKS = ("text_generation", "text-generation")
_LOAD_KEYWORDS = ("threads", "context", "kv_type", "config_path", "tokenizer_path", "position", "lora")


def pipeline(task="text_generation", model=None, **kwargs):
    """A text-generation pipeline in the manner of openMind / transformers.

    `model` is a checkpoint path or a loaded Model. Keywords among threads, context, kv_type,
    config_path, tokenizer_path, position and lora load the model; any other keyword becomes a default
    generation keyword of every call. lora="ADAPTER[:SCALE]" (or a list of them) applies LoRA adapters
    (PEFT folders or GGUF LoRA files) unmerged, as the CLI's --lora does.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: baichuan_cpp supports only 'text_generation'")
    if model is None:
        raise ValueError("pipeline() needs model=: a checkpoint path or a baichuan_cpp.Model")
    load = {k: kwargs.pop(k) for k in _LOAD_KEYWORDS if k in kwargs}
    if isinstance(model, Model):
        if load:
            raise ValueError(f"{', '.join(load)}: loading options apply only when model= is a path")
    else:
        model = Model(model, **load)
    return TextGenerationPipeline(model, **kwargs)


def _is_conversation(x):
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(m, dict) for m in x)


class TextGenerationPipeline:
    """Call with a prompt, a list of prompts, or a conversation (a list of {"role", "content"} dicts)."""

    def __init__(self, model, **generate_kwargs):
        self.model = model
        self.task = "text_generation"
        self.generate_kwargs = generate_kwargs

    def __call__(self, text_inputs, return_full_text=True, **kwargs):
        kwargs = {**self.generate_kwargs, **kwargs}
        # As transformers: one input gives [{"generated_text": ...}], a list gives a list of those.
        if isinstance(text_inputs, str) or _is_conversation(text_inputs):
            return self._generate_one(text_inputs, return_full_text, kwargs)
        if isinstance(text_inputs, (list, tuple)):
            return [self._generate_one(x, return_full_text, kwargs) for x in text_inputs]
        raise TypeError(f"expected a str, a conversation or a list of them, got {type(text_inputs).__name__}")

    def _generate_one(self, prompt, return_full_text, kwargs):
        if isinstance(prompt, str):
            text = self.model.generate(prompt, **kwargs)
            generated = prompt + text if return_full_text else text
        elif _is_conversation(prompt):
            answer = self.model.chat(list(prompt), **kwargs)
            generated = [*prompt, {"role": "assistant", "content": answer}] if return_full_text else answer
        else:
            raise TypeError(f"expected a str or a conversation, got {type(prompt).__name__}")
        return [{"generated_text": generated}]

    def __repr__(self):
        return f"<baichuan_cpp.TextGenerationPipeline {self.model!r}>"
