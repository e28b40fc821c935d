"""lora= on Model and pipeline(): adapters applied unmerged, giving the logits of the CLI's --lora."""
import array
import json
import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

import baichuan_cpp

PROMPT = "The capital of France is"


def write_peft_adapter(folder, hidden, layers, r=2, alpha=4.0, seed=7):
    """A PEFT LoRA folder (adapter_config.json + F32 adapter_model.safetensors) on W_pack and o_proj,
    with random A and B (B nonzero, so that the adapter changes the logits)."""
    rng = random.Random(seed)
    tensors = {}
    for layer in range(layers):
        for target, out in (("self_attn.W_pack", 3 * hidden), ("self_attn.o_proj", hidden)):
            name = f"base_model.model.model.layers.{layer}.{target}"
            tensors[f"{name}.lora_A.weight"] = ([r, hidden], [rng.uniform(-0.3, 0.3) for _ in range(r * hidden)])
            tensors[f"{name}.lora_B.weight"] = ([out, r], [rng.uniform(-0.3, 0.3) for _ in range(out * r)])
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, values) in tensors.items():
        blob = array.array("f", values).tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": ["W_pack", "o_proj"], "bias": "none", "fan_in_fan_out": False, "inference_mode": True}))
    return folder


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, model):
    c = model.config
    return write_peft_adapter(tmp_path_factory.mktemp("lora") / "adapter", c["hidden_size"], c["num_hidden_layers"])


def cli_path():
    # PYTHONPATH=<build>/python: the CLI of the same build is <build>/bin/baichuan.
    path = Path(os.environ.get("BAICHUAN_CLI", Path(baichuan_cpp.__file__).resolve().parents[2] / "bin" / "baichuan"))
    if not path.exists():
        pytest.skip(f"the CLI {path} is not built (set BAICHUAN_CLI)")
    return str(path)


def cli_logits(tmp_path, tiny_path, loras):
    out = tmp_path / "logits.f32"
    args = [cli_path(), "logits", "-m", tiny_path, "-p", PROMPT, "-o", str(out), "--kv-type", "f32", "-t", "1"]
    for lora in loras:
        args += ["--lora", lora]
    run = subprocess.run(args, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return array.array("f", out.read_bytes())


def max_relative_error(got, want):
    return max(abs(a - b) for a, b in zip(got, want)) / max(abs(x) for x in want)


def test_model_lora_gives_the_cli_logits(tmp_path, tiny_path, adapter, model):
    spec = f"{adapter}:0.5"
    with_lora = baichuan_cpp.Model(tiny_path, threads=1, kv_type="f32", lora=spec)
    assert with_lora.lora == [spec]
    got = with_lora.logits(PROMPT)
    want = cli_logits(tmp_path, tiny_path, [spec])
    assert len(got) == len(want) == model.vocab_size
    assert max_relative_error(got, want) <= 1e-5
    # The adapter does change the logits (the comparison above is not base vs base).
    assert max_relative_error(model.logits(PROMPT), want) > 1e-3


def test_pipeline_takes_lora_and_a_list_of_adapters(tmp_path, tiny_path, adapter):
    specs = [str(adapter), f"{adapter}:-0.25"]
    pipe = baichuan_cpp.pipeline(task="text_generation", model=tiny_path, threads=1, kv_type="f32", lora=specs)
    assert pipe.model.lora == specs
    want = cli_logits(tmp_path, tiny_path, specs)
    assert max_relative_error(pipe.model.logits(PROMPT), want) <= 1e-5
    out = pipe(PROMPT, do_sample=False, max_new_tokens=3, return_full_text=False)
    assert isinstance(out[0]["generated_text"], str)


def test_lora_errors(tiny_path, model, tmp_path):
    with pytest.raises(OSError, match="nonexistent-adapter"):
        baichuan_cpp.Model(tiny_path, threads=1, lora=str(tmp_path / "nonexistent-adapter"))
    with pytest.raises(TypeError, match="lora must be"):
        baichuan_cpp.Model(tiny_path, threads=1, lora=3)
    with pytest.raises(ValueError, match="loading options"):
        baichuan_cpp.pipeline(task="text_generation", model=model, lora="x")
