"""Next-token distribution of a Hugging Face Llama checkpoint computed from the
formulas (numpy, float64): embeddings, RMSNorm, rotary embeddings in the HF
rotate_half layout, grouped-query causal attention, SwiGLU MLP, final norm and
head. Reads model.safetensors directly. Prints {"probs": [...]} as JSON."""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t["dtype"]
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"]).astype(np.float64)
    return out


def main():
    model_dir, tokens = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    cfg = json.load(open(model_dir + "/config.json"))
    w = load(model_dir + "/model.safetensors")
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]

    def norm(x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g

    T = len(tokens)
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.outer(np.arange(T), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x):  # [T, heads, hd]
        half = np.concatenate([-x[..., hd // 2:], x[..., : hd // 2]], -1)
        return x * cos[:, None, :] + half * sin[:, None, :]

    x = w["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd))
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        k = np.repeat(k, nh // nkv, axis=1)
        v = np.repeat(v, nh // nkv, axis=1)
        s = np.einsum("thd,uhd->htu", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("htu,uhd->thd", s, v).reshape(T, nh * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = norm(x, w["model.norm.weight"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    logits = x[-1] @ head.T
    e = np.exp(logits - logits.max())
    print(json.dumps({"probs": (e / e.sum()).tolist()}))


main()
