#!/usr/bin/env python3
"""Write a small random Mixtral checkpoint in Hugging Face format (for demos).

Pure standard library (no numpy / torch): runs on a stock Debian python3.

    python3 scripts/make_random_checkpoint.py --out /tmp/tiny-mixtral \\
        --tokenizer tests/data/tokenizer.model

Writes DIR/config.json (MixtralForCausalLM), DIR/model.safetensors (HF tensor
names, hand-written safetensors: u64-LE header length, JSON header with
dtype/shape/data_offsets and "__metadata__": {"format": "pt"}, then the data)
and, with --tokenizer, DIR/tokenizer.model.

Weights ~ random.Random(seed).gauss: embeddings std 1.0, router (gate) and
lm_head std 0.5, every other Linear std 0.1, RMSNorm weights 1 + 0.1*N(0, 1).
bf16 is the top 16 bits of the float32 value, rounded to nearest even.
"""

import argparse
import array
import json
import os
import random
import shutil
import struct
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", help="tokenizer.model to copy into --out")
    a = p.parse_args(argv)
    if a.hidden % a.heads:
        p.error("--hidden must be divisible by --heads")
    if a.heads % a.kv_heads:
        p.error("--heads must be divisible by --kv-heads")
    if a.experts < 2:
        p.error("--experts must be >= 2 (2 experts per token)")
    return a


def tensor_specs(a):
    """[(name, shape, kind)] in HF naming; kind is 'norm' or a std (float)."""
    D, F, V, E = a.hidden, a.ffn, a.vocab, a.experts
    hd = D // a.heads
    H, KV = a.heads * hd, a.kv_heads * hd
    specs = [("model.embed_tokens.weight", [V, D], 1.0)]
    for i in range(a.layers):
        L = f"model.layers.{i}."
        specs += [
            (L + "input_layernorm.weight", [D], "norm"),
            (L + "self_attn.q_proj.weight", [H, D], 0.1),
            (L + "self_attn.k_proj.weight", [KV, D], 0.1),
            (L + "self_attn.v_proj.weight", [KV, D], 0.1),
            (L + "self_attn.o_proj.weight", [D, H], 0.1),
            (L + "post_attention_layernorm.weight", [D], "norm"),
            (L + "block_sparse_moe.gate.weight", [E, D], 0.5),
        ]
        for j in range(E):
            X = L + f"block_sparse_moe.experts.{j}."
            specs += [
                (X + "w1.weight", [F, D], 0.1),
                (X + "w2.weight", [D, F], 0.1),
                (X + "w3.weight", [F, D], 0.1),
            ]
    specs += [("model.norm.weight", [D], "norm"), ("lm_head.weight", [V, D], 0.5)]
    return specs


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def encode(values, dtype):
    """values: list of Python floats -> little-endian bytes."""
    f32 = array.array("f", values)  # rounds each double to float32
    if dtype == "f32":
        if sys.byteorder == "big":
            f32.byteswap()
        return f32.tobytes()
    bits = array.array("I")
    assert bits.itemsize == 4
    bits.frombytes(f32.tobytes())
    out = array.array("H")
    assert out.itemsize == 2
    for b in bits:
        if (b & 0x7F800000) == 0x7F800000 and (b & 0x007FFFFF):  # NaN: keep it a NaN
            out.append((b >> 16) | 0x0040)
        else:  # round to nearest, ties to even
            out.append(((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def write_safetensors(path, tensors, dtype):
    """tensors: [(name, shape, bytes)] written in the given order."""
    st_dtype = {"bf16": "BF16", "f32": "F32"}[dtype]
    header, offset = {}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": st_dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)  # pad so the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _, _, data in tensors:
            f.write(data)
    os.replace(tmp, path)


def config(a):
    return {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "hidden_size": a.hidden,
        "intermediate_size": a.ffn,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.hidden // a.heads,
        "num_local_experts": a.experts,
        "num_experts_per_tok": 2,
        "vocab_size": a.vocab,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e6,
        "sliding_window": None,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": {"bf16": "bfloat16", "f32": "float32"}[a.dtype],
    }


def main(argv=None):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    tensors = []
    for name, shape, kind in tensor_specs(a):
        n = numel(shape)
        if kind == "norm":
            vals = [1.0 + 0.1 * rng.gauss(0.0, 1.0) for _ in range(n)]
        else:
            vals = [rng.gauss(0.0, kind) for _ in range(n)]
        tensors.append((name, shape, encode(vals, a.dtype)))
    write_safetensors(os.path.join(a.out, "model.safetensors"), tensors, a.dtype)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(a), f, indent=2)
        f.write("\n")
    if a.tokenizer:
        shutil.copyfile(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    total = sum(len(t[2]) for t in tensors)
    print(f"wrote {a.out}: {len(tensors)} tensors, {total} bytes of {a.dtype} weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
