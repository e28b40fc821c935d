#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz targets that have no file fixtures of their own into
fuzz/corpus/<target>/seed_*: small valid inputs (and a few near misses) from which libFuzzer mutates.
The MindRecord seeds are built from a set `baichuan preprocess --format mindrecord` wrote: pass its
data file as the first argument (the .db is read beside it). Run scripts/fuzz.sh afterwards to grow
the corpora, and minimise them with -merge=1 (scripts/fuzz.sh --merge)."""
import json
import os
import sqlite3
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


# --- protobuf wire format, for tokenizer.model ---
def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_varint(n, v):
    return varint(n << 3) + varint(v)


def field_bytes(n, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((n << 3) | 2) + varint(len(b)) + b


def field_float(n, f):
    return varint((n << 3) | 5) + struct.pack("<f", f)


def model_proto(pieces, model_type=1, byte_fallback=False):
    out = b""
    for piece, score, typ in pieces:
        out += field_bytes(1, field_bytes(1, piece) + field_float(2, score) + field_varint(3, typ))
    trainer = (field_varint(3, model_type) + field_varint(4, len(pieces)) + field_varint(35, int(byte_fallback)) +
               field_varint(40, 0) + field_varint(41, 1) + field_varint(42, 2) + field_varint(43, 0xFFFFFFFFFFFFFFFF))
    normalizer = field_bytes(1, "identity") + field_varint(3, 1) + field_varint(4, 0) + field_varint(5, 1)
    return out + field_bytes(2, trainer) + field_bytes(3, normalizer)


def tokenizer_seeds():
    base = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    words = ["\u2581", "a", "b", "c", "\u2581hello", "\u2581world", "lo", "he", "\u4f60", "\u597d", "1", "2"]
    normal = [(w, -float(i + 1), 1) for i, w in enumerate(words)]
    put("fuzz_tokenizer_model", "unigram.model", model_proto(base + normal))
    put("fuzz_tokenizer_model", "bpe.model", model_proto(base + normal, model_type=2))
    byte_pieces = [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    put("fuzz_tokenizer_model", "byte_fallback.model", model_proto(base + byte_pieces + normal, byte_fallback=True))
    put("fuzz_tokenizer_model", "user_defined.model", model_proto(base + [("<reserved_106>", 0.0, 4)] + normal))


def config_seeds():
    tiny7 = {"architectures": ["BaichuanForCausalLM"], "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 172,
             "max_position_embeddings": 512, "model_max_length": 512, "num_attention_heads": 4,
             "num_hidden_layers": 2, "rms_norm_eps": 1e-6, "vocab_size": 1000, "bos_token_id": 1,
             "eos_token_id": 2, "pad_token_id": 0, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    put("fuzz_model_config", "7b_tiny.json", json.dumps(tiny7, indent=2))
    tiny13 = dict(tiny7)
    del tiny13["max_position_embeddings"]
    put("fuzz_model_config", "13b_tiny.json", json.dumps(tiny13))
    for d in ("Baichuan2-13B-Chat", "Baichuan2-7B-Chat-debug-tiny"):
        for f in ("config.json", "generation_config.json"):
            p = os.path.join(SHARED, "assets", "baichuan2", "configs", d, f)
            if os.path.exists(p):
                put("fuzz_model_config", d + "_" + f, open(p, "rb").read())
    put("fuzz_model_config", "generation.json", json.dumps(
        {"max_new_tokens": 2048, "temperature": 0.3, "top_k": 5, "top_p": 0.85, "repetition_penalty": 1.05,
         "do_sample": True, "user_token_id": 195, "assistant_token_id": 196, "eos_token_id": 2}))


def shard_index_seeds():
    one, two = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    put("fuzz_shard_index", "good.json", json.dumps({"metadata": {"total_size": 12},
                                                     "weight_map": {"a": one, "b": one, "c": two}}))
    put("fuzz_shard_index", "subset.json", json.dumps({"weight_map": {"b": one}}))
    put("fuzz_shard_index", "missing_tensor.json", json.dumps({"weight_map": {"a": two}}))
    put("fuzz_shard_index", "outside.json", json.dumps({"weight_map": {"a": "../" + one}}))
    put("fuzz_shard_index", "missing_shard.json", json.dumps({"weight_map": {"a": "model-00003-of-00003.safetensors"}}))


def http_seeds():
    chat, completions = b"\x00", b"\x01"
    seeds = {
        "chat": (chat, {"model": "baichuan", "messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Hello \u4f60\u597d"}],
                        "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 5, "seed": 42,
                        "stop": ["\n", "END"], "stream": True, "stream_options": {"include_usage": True}}),
        "chat_multi": (chat, {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                           {"role": "user", "content": [{"type": "text", "text": "c"}]}],
                              "temperature": 0, "repetition_penalty": 1.1, "n": 1, "frequency_penalty": 0,
                              "presence_penalty": 0, "ignore_eos": True, "max_completion_tokens": 8}),
        "completion": (completions, {"prompt": "Once upon a time", "max_tokens": 8, "stop": "\n", "temperature": None}),
        "completion_ids": (completions, {"prompt": [1, 2, 3, 1000], "max_tokens": 300}),
        "tokenize": (chat, {"content": "Hello world <s>"}),
        "detokenize": (completions, {"tokens": [1, 2, 100, 5000]}),
    }
    for name, (endpoint, body) in seeds.items():
        put("fuzz_http_request", name + ".json", endpoint + json.dumps(body, ensure_ascii=False).encode())
    put("fuzz_http_request", "not_json", chat + b"{\"messages\": [")


def belle_seeds():
    belle = [{"id": "x0", "conversations": [{"from": "human", "value": "1+1=?"}, {"from": "gpt", "value": "2"}]},
             {"id": "x1", "conversations": [{"from": "human", "value": "\u4f60\u597d"},
                                            {"from": "assistant", "value": "\u4f60\u597d\uff01"},
                                            {"from": "human", "value": "?"}, {"from": "gpt", "value": "!"}]}]
    alpaca = [{"instruction": "Add.", "input": "1 1", "output": "2"},
              {"instruction": "Say hi", "input": "", "output": "hi", "history": [["q", "a"]]}]
    auto, as_belle, as_alpaca = b"\x00", b"\x01", b"\x02"
    put("fuzz_belle_records", "belle_array.json", auto + json.dumps(belle, ensure_ascii=False, indent=1).encode())
    put("fuzz_belle_records", "belle_lines.jsonl",
        as_belle + "\n".join(json.dumps(r, ensure_ascii=False) for r in belle).encode() + b"\n")
    put("fuzz_belle_records", "alpaca_array.json", as_alpaca + json.dumps(alpaca).encode())
    put("fuzz_belle_records", "alpaca_lines.jsonl", auto + "\n".join(json.dumps(r) for r in alpaca).encode())
    put("fuzz_belle_records", "bad_record.jsonl", auto + b'{"id": 1, "conversations": [{"from": 3}]}\n' +
        json.dumps(belle[0]).encode() + b"\nnot json\n")


def token_dataset_seeds():
    row_length, rows = 8, [([195, 10, 11, 196, 12, 2, 0, 0], [2, -100, -100, -100, 12, 2, -100, -100]),
                           ([195, 5, 196, 6, 7, 2, 0, 0], [2, -100, -100, 6, 7, 2, -100, -100])]
    header = b"BCTOKENS" + struct.pack("<IIQQQQiiQ", 1, row_length, len(rows), 11, 5, 0, 0, -100, 64)
    body = b"".join(struct.pack("<%di" % row_length, *i) + struct.pack("<%di" % row_length, *l) for i, l in rows)
    put("fuzz_token_dataset", "two_rows.tokens", header + body)
    put("fuzz_token_dataset", "rows.json", json.dumps([{"id": "0", "input_ids": i, "labels": l} for i, l in rows]))


def mindrecord_seeds(data_path):
    """The set preprocess wrote, compacted to fit -max_len: header_size and page_size shrunk to what
    the header and the pages use (the reader only needs the offsets to agree), pages moved to match."""
    db = sqlite3.connect(data_path + ".db")
    cols = "PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END, ROW_GROUP_ID, PAGE_ID_BLOB, PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END"
    rows = db.execute("SELECT " + cols + " FROM INDEXES ORDER BY ROW_ID").fetchall()[:8]
    data = open(data_path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    old_header_size, old_page_size = header["header_size"], header["page_size"]
    pages = [data[old_header_size + p["page_id"] * old_page_size:][:p["page_size"]] for p in header["page"]]
    header["shard_addresses"] = ["data.mindrecord"]
    header["page_size"] = max(len(p) for p in pages)
    header["header_size"] = 0
    text = json.dumps(header, separators=(",", ":")).encode()
    header["header_size"] = 8 + len(text) + 16  # room for the longer number
    text = json.dumps(header, separators=(",", ":")).encode()
    out = struct.pack("<Q", len(text)) + text
    out += b"\0" * (header["header_size"] - len(out))
    for p in pages:
        out += p + b"\0" * (header["page_size"] - len(p))
    index = bytes([len(rows)]) + b"".join(struct.pack("<7q", *r) for r in rows)
    put("fuzz_mindrecord", "preprocess.bin", index + out)


# --- LoRA adapters (fuzz_lora_adapter): the model of the target has hidden 8, intermediate 12, 2 heads, 2 layers ---
def lora_safetensors(tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, shape, dtype in tensors:
        n = 1
        for d in shape:
            n *= d
        size = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
        blob = bytes((7 * i + len(name)) % 61 for i in range(n * size)) if dtype != "F32" else \
            b"".join(struct.pack("<f", ((i * 37 + len(name)) % 19 - 9) / 16.0) for i in range(n))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def lora_gguf(tensors, alpha=16.0, kind="adapter"):
    def string(s):
        s = s.encode()
        return struct.pack("<Q", len(s)) + s
    kv = [("general.architecture", 8, string("baichuan")), ("general.type", 8, string(kind)),
          ("adapter.type", 8, string("lora")), ("adapter.lora.alpha", 6, struct.pack("<f", alpha))]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, typ, value in kv:
        out += string(key) + struct.pack("<I", typ) + value
    offset, blobs = 0, b""
    for name, shape in tensors:
        n = shape[0] * shape[1]
        out += string(name) + struct.pack("<I", 2) + struct.pack("<QQ", shape[1], shape[0]) + struct.pack("<IQ", 0, offset)
        blob = b"".join(struct.pack("<f", ((i * 13) % 7 - 3) / 8.0) for i in range(n))
        blob += b"\0" * ((32 - len(blob) % 32) % 32)
        blobs += blob
        offset += len(blob)
    out += b"\0" * ((32 - len(out) % 32) % 32)
    return out + blobs


def lora_adapter_seeds():
    dims = {"self_attn.W_pack": (24, 8), "self_attn.o_proj": (8, 8), "mlp.gate_proj": (12, 8), "mlp.up_proj": (12, 8),
            "mlp.down_proj": (8, 12)}

    def peft(name, config, modules, r=2, dtype="F32"):
        tensors = []
        for layer in range(2):
            for m in modules:
                out, inp = dims[m]
                base = "base_model.model.model.layers.%d.%s" % (layer, m)
                tensors += [(base + ".lora_A.weight", [r, inp], dtype), (base + ".lora_B.weight", [out, r], dtype)]
        text = json.dumps(config, indent=2, sort_keys=True).encode()
        put("fuzz_lora_adapter", name, b"\0" + struct.pack("<I", len(text)) + text + lora_safetensors(tensors))

    base = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none", "fan_in_fan_out": False,
            "modules_to_save": None, "use_dora": False, "use_rslora": False}
    peft("peft_w_pack", dict(base, target_modules=["W_pack"]), ["self_attn.W_pack"])
    peft("peft_all_bf16", dict(base, target_modules=["W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"]),
         list(dims), dtype="BF16")
    peft("peft_patterns_f16", dict(base, target_modules=r".*\.(o_proj|down_proj)", use_rslora=True,
                                   alpha_pattern={"down_proj": 3}), ["self_attn.o_proj", "mlp.down_proj"], dtype="F16")
    peft("peft_dora", dict(base, target_modules=["W_pack"], use_dora=True), ["self_attn.W_pack"])
    peft("peft_shape", dict(base, r=3, target_modules=["W_pack"]), ["self_attn.W_pack"])
    tensors = []
    for layer in range(2):
        for role, (out, inp) in [("attn_q", (8, 8)), ("attn_k", (8, 8)), ("attn_v", (8, 8)), ("ffn_down", (8, 12))]:
            name = "blk.%d.%s.weight" % (layer, role)
            tensors += [(name + ".lora_a", (2, inp)), (name + ".lora_b", (out, 2))]
    put("fuzz_lora_adapter", "gguf_lora", b"\1" + lora_gguf(tensors))
    put("fuzz_lora_adapter", "gguf_alpha0", b"\1" + lora_gguf(tensors[:6], alpha=0.0))
    put("fuzz_lora_adapter", "gguf_model", b"\1" + lora_gguf(tensors[:2], kind="model"))


# --- torch.save zips in the 4-bit Chat layout (bitsandbytes NF4), as formats/bnb_nf4's writer makes
# them: the reference file's rows (32, 88) share blocks, so only these seeds reach the path that keeps
# rows of whole 64-weight blocks in 4 bits ---
def torch_bin_nf4(four_bit, halves):
    import zipfile, io

    def s(text):
        text = text.encode()
        return b"X" + struct.pack("<I", len(text)) + text

    def glob(module, name):
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def i(v):
        return b"J" + struct.pack("<i", v)

    def ints(vs):
        return b"(" + b"".join(i(v) for v in vs) + b"t"

    od = glob("collections", "OrderedDict") + b")R"
    storages = []

    def storage(data):
        storages.append(data)
        return str(len(storages) - 1)

    def tensor(kind, key, numel, size):
        stride = [1] * len(size)
        for k in range(len(size) - 1, 0, -1):
            stride[k - 1] = stride[k] * size[k]
        return (glob("torch._utils", "_rebuild_tensor_v2") + b"((" + s("storage") + glob("torch", kind) + s(key) +
                s("cpu") + i(numel) + b"tQ" + i(0) + ints(size) + ints(stride) + b"\x89" + od + b"tR")

    nf4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
           -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
           0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
    code2 = storage(struct.pack("<256f", *[k / 300.0 for k in range(256)]))
    code = storage(struct.pack("<16f", *nf4))
    pkl = b"\x80\x02}("
    for name, shape in halves:
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        key = storage(struct.pack("<%de" % n, *[0.25 * (k % 7) for k in range(n)]))
        pkl += s(name) + glob("torch._utils", "_rebuild_parameter") + b"(" + tensor("HalfStorage", key, n, shape) + b"\x89" + od + b"tR"
    for name, (rows, cols) in four_bit:
        n = rows * cols
        nblocks = (n + 63) // 64
        nblocks2 = (nblocks + 255) // 256
        data = storage(bytes((k * 37 + 11) & 255 for k in range((n + 1) // 2)))
        qabsmax = storage(bytes((k * 53 + 3) & 255 for k in range(nblocks)))
        offset = storage(struct.pack("<f", 0.125))
        absmax2 = storage(struct.pack("<%df" % nblocks2, *[0.75] * nblocks2))
        pkl += s(name + ".data") + tensor("ByteStorage", data, (n + 1) // 2, [(n + 1) // 2, 1])
        pkl += (s(name + ".quant_state") + b"](" + tensor("ByteStorage", qabsmax, nblocks, [nblocks]) +
                glob("torch", "Size") + b"(" + ints([rows, cols]) + b"tR" + glob("torch", "float16") + i(64) + b"](" +
                tensor("FloatStorage", offset, 1, []) + b"](" + tensor("FloatStorage", absmax2, nblocks2, [nblocks2]) +
                tensor("FloatStorage", code2, 256, [256]) + i(256) + b"\x89" + glob("torch", "float32") + b"NNee" +
                s("nf4") + tensor("FloatStorage", code, 16, [16]) + b"e")
    pkl += b"u."
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("pytorch_model/data.pkl", pkl)
        for k, data in enumerate(storages):
            z.writestr("pytorch_model/data/%d" % k, data)
        z.writestr("pytorch_model/version", "3\n")
    return out.getvalue()


def torch_bin_seeds():
    halves = [("model.norm.weight", [4])]
    put("fuzz_torch_bin", "nf4_whole_blocks", torch_bin_nf4([("model.layers.0.mlp.up_proj.weight", (2, 128))], halves))
    put("fuzz_torch_bin", "nf4_shared_blocks",
        torch_bin_nf4([("model.layers.0.mlp.down_proj.weight", (3, 40)), ("model.layers.0.self_attn.o_proj.weight", (1, 64))], halves))


if __name__ == "__main__":
    tokenizer_seeds()
    config_seeds()
    shard_index_seeds()
    http_seeds()
    belle_seeds()
    token_dataset_seeds()
    lora_adapter_seeds()
    torch_bin_seeds()
    if len(sys.argv) > 1:
        mindrecord_seeds(sys.argv[1])
