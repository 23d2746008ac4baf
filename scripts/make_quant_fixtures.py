"""Golden files for peft-ts' bitsandbytes-compatible quantisation (NF4, FP4, double quantisation, LLM.int8).

    source ../shared/pyref/env.sh && /usr/bin/python3 scripts/make_quant_fixtures.py

bitsandbytes is not installed here (it needs CUDA), so this script is a NumPy TRANSCRIPTION of its algorithm
(bitsandbytes main, commit 95f9af3, August 2026), float32 operation for float32 operation:
- `functional.get_4bit_type("nf4" | "fp4")` (the 16 code values) and `functional.create_dynamic_map()` (the signed
  8-bit dynamic map of double quantisation, with torch.linspace's float32 formula);
- `quantize_4bit` / `dequantize_4bit` as the CUDA kernels `kQuantizeBlockwise<…, FP4|NF4>` and `kDequantizeBlockwise`
  in csrc/kernels.cu run them: absmax per block of 64, scale = 1.0f / absmax, x * scale through the decision trees
  `dQuantizeNF4` / `dQuantizeFP4` (strict `>` against float32 pivots; a zero block gives NaN, which falls to code 0),
  element 2j in the high nibble and 2j+1 in the low nibble, an odd tail padded with 0.0;
- double quantisation (`compress_statistics=True`): offset = mean(absmax), then `quantize_blockwise(absmax - offset,
  blocksize=256)` with the dynamic map through `dQuantize<0>` (the kernel's 7-step binary search and midpoint
  rounding); dequantisation is code[q] * absmax2 + offset, then code4[q] * absmax;
- LLM.int8 (`Int8Params._quantize`, `int8_vectorwise_quant`, `int8_vectorwise_dequant`, `int8_mixed_scaled_mm`):
  weights cast to float16, row absmax SCB, round(W * (127 / SCB)) half to even; at matmul time activation columns
  holding a value with |x| >= threshold are taken out and multiplied in float32 against the dequantised weight
  columns, the rest goes through the int8 product, dequantised as ((acc * 1/127²) * rowStat) * colStat + bias.
  Deviation kept by peft-ts: activations are quantised from float32 (bitsandbytes casts them to float16 first).

The mean of double quantisation is summed in float64 and rounded once to float32 (torch's float32 reduction order
is device-specific; the two can differ in the last bit of the offset for large tensors).

Writes test/fixtures/quant/*.safetensors and two tiny Llama checkpoints in the layout transformers + bitsandbytes save
(test/fixtures/quant/bnb-nf4-llama/, bnb-int8-llama/: config.json with quantization_config, model.safetensors).
Deterministic: fixed seeds; rerunning rewrites the same bytes.
"""

import json
import os
from fractions import Fraction

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "test", "fixtures", "quant")
f32 = np.float32

# functional.get_4bit_type: the listed values divided (in float32) by their largest magnitude.
NF4_DATA = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
            -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
            0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
            0.7229568362236023, 1.0]
FP4_DATA = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]


def code_4bit(data):
    c = np.array(data, dtype=f32)
    return c / np.abs(c).max()


NF4 = code_4bit(NF4_DATA)
FP4 = code_4bit(FP4_DATA)


def torch_linspace_f32(start, end, steps, width=8):
    """torch.linspace(start, end, steps, dtype=float32) on an x86 CPU (AVX2), as torch 1.13 computes it (checked here).

    The scalar loop works in double and rounds (lower half from start, upper half from end); the vectorised loop,
    two vectors of `width` lanes at a time, rounds each vector's first value that way and adds lane * step in float32.
    """
    step = (end - start) / (steps - 1)
    half = steps // 2

    def scalar(i):
        return f32(start + step * i if i < half else end - step * (steps - i - 1))

    out = np.array([scalar(i) for i in range(steps)], dtype=f32)
    for idx in range(0, steps - steps % (2 * width), width):
        out[idx:idx + width] = scalar(idx) + np.arange(width, dtype=f32) * f32(step)
    return out


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """functional.create_dynamic_map: fraction means of each decade, both signs, plus 0 and 1, sorted."""
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        fraction_items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1
        boundaries = torch_linspace_f32(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / f32(2.0)
        scale = f32(10 ** (-(max_exponent_bits - 1) + i))
        data += (scale * means).tolist()
        if signed:
            data += (-scale * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return np.array(data, dtype=f32)


DYNAMIC = create_dynamic_map()

def f32_literal(text):
    """A C++ float literal `text`f as the compiler rounds it: straight from the decimal to the nearest float32 (ties to
    even), which for four NF4 pivots (midpoints of two code values, so at a float32 tie) differs from
    np.float32(float(text))."""
    exact = Fraction(text)
    near = np.float32(float(text))
    bits = int(np.array(near, dtype=f32).view(np.uint32))
    cands = [np.array(bits + d, dtype=np.uint32).view(f32)[()] for d in (-1, 0, 1)]
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.array(v, dtype=f32).view(np.uint32)) & 1))


# dQuantizeNF4 / dQuantizeFP4 pivots (float32 literals in csrc/kernels.cu).
NF4_TREE = [f32_literal(v) for v in ("0.03979014977812767", "0.3893125355243683", "0.6427869200706482", "0.8614784181118011",
                             "0.5016634166240692", "0.2035212516784668", "0.2920137718319893", "0.1202552504837513",
                             "-0.33967943489551544", "-0.13791173323988914", "-0.045525018125772476",
                             "-0.23460740596055984", "-0.6106329262256622", "-0.4599952697753906", "-0.8480964004993439")]
FP4_TREE = [f32_literal(v) for v in ("0.29166667", "0.583333", "0.8333333", "0.4166667", "0.0859375", "0.20833333", "0.00260417")]


def d_quantize_nf4(x):
    """dQuantizeNF4's tree is a binary search over pivots that grow with the code, so the code it reaches is the number of
    pivots x exceeds (strict >; NaN exceeds none and gives 0, as in the kernel)."""
    return sum(1 for p in sorted(NF4_TREE) if x > p)


def d_quantize_fp4(x):
    sign = 0b1000 if x < 0 else 0
    x = abs(x)
    a, b, c, d, e, g, h = FP4_TREE
    if x > a:
        if x > b:
            return (0b0011 if x > c else 0b0010) + sign
        return (0b101 if x > d else 0b100) + sign
    if x > e:
        return (0b0111 if x > g else 0b0110) + sign
    return (0b0001 if x > h else 0b0000) + sign


def d_quantize_dynamic(code, x):
    """dQuantize<0>: the kernel's binary search over the sorted 256-entry map, then midpoint rounding."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = f32(-1.0), f32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > (upper + val) * f32(0.5) else pivot
    return lower_pivot if x < (lower + val) * f32(0.5) else pivot


def block_scales(flat, blocksize):
    """kQuantizeBlockwise's first step: absmax per block (float32) and its reciprocal 1.0f / absmax."""
    blocks = -(-flat.size // blocksize)
    absmax = np.array([np.abs(flat[b * blocksize:(b + 1) * blocksize]).max() for b in range(blocks)], dtype=f32)
    with np.errstate(divide="ignore"):
        inv = f32(1.0) / absmax
    return absmax, inv


def quantize_blockwise(a, code, blocksize):
    flat = a.reshape(-1).astype(f32)
    absmax, inv = block_scales(flat, blocksize)
    with np.errstate(invalid="ignore"):
        q = [d_quantize_dynamic(code, flat[i] * inv[i // blocksize]) for i in range(flat.size)]
    return np.array(q, dtype=np.uint8), absmax


def dequantize_blockwise(q, absmax, code, blocksize):
    return np.array([code[v] * absmax[i // blocksize] for i, v in enumerate(q)], dtype=f32)


def quantize_4bit(a, quant_type, double_quant, blocksize=64):
    flat = a.reshape(-1).astype(f32)
    absmax, inv = block_scales(flat, blocksize)
    tree = d_quantize_nf4 if quant_type == "nf4" else d_quantize_fp4
    padded = np.concatenate([flat, np.zeros(flat.size % 2, dtype=f32)])
    with np.errstate(invalid="ignore"):
        q = np.array([tree(padded[i] * inv[min(i, flat.size - 1) // blocksize]) for i in range(padded.size)], dtype=np.uint8)
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8).reshape(-1, 1)
    state = {"absmax_fp32": absmax}
    if double_quant:
        offset = f32(absmax.astype(np.float64).mean())
        qabsmax, absmax2 = quantize_blockwise(absmax - offset, DYNAMIC, 256)
        state.update(absmax=qabsmax, nested_absmax=absmax2, nested_quant_map=DYNAMIC.copy(), offset=np.array([offset], dtype=f32))
    else:
        state["absmax"] = absmax
    return packed, state


def dequantize_4bit(packed, state, quant_type, shape, blocksize=64):
    code = NF4 if quant_type == "nf4" else FP4
    absmax = state["absmax"]
    if "nested_absmax" in state:
        absmax = dequantize_blockwise(absmax, state["nested_absmax"], state["nested_quant_map"], 256) + state["offset"][0]
    n = int(np.prod(shape))
    b = packed.reshape(-1)
    q = np.empty(b.size * 2, dtype=np.uint8)
    q[0::2], q[1::2] = b >> 4, b & 0x0F
    return np.array([code[q[i]] * absmax[i // blocksize] for i in range(n)], dtype=f32).reshape(shape)


INV127 = f32(7.874015718698502e-3)       # int8_vectorwise_dequant's 1/127
MM_DEQUANT = f32(6.200012e-05)           # MM_DEQUANT_CONST in csrc/kernels.cu, 1/127²


def int8_quantize_rows(a, threshold=0.0):
    """int8_vectorwise_quant: row absmax over |x| < threshold (all when 0), round(x * (127 / absmax)), outliers 0."""
    a = a.astype(f32)
    outliers = np.abs(a) >= f32(threshold) if threshold > 0 else np.zeros(a.shape, dtype=bool)
    kept = np.where(outliers, f32(0), a)
    stats = np.abs(kept).max(axis=1).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = f32(127.0) / stats
        q = np.round(kept * scale[:, None])
    q = np.where(np.isfinite(q), q, 0).astype(np.int8)
    cols = np.nonzero(outliers.any(axis=0))[0]
    if a.shape[0] > 1:
        q[:, cols] = 0
    return q, stats, cols


def int8_dequantize(cb, scb):
    return ((cb.astype(f32) * scb[:, None]) * INV127).astype(f32)


def int8_linear(x, cb, scb, bias, threshold):
    """MatMul8bitLt.forward (inference): int8 product of the non-outlier part + float32 product of outlier columns."""
    ca, sca, cols = int8_quantize_rows(x, threshold)
    acc = ca.astype(np.int64) @ cb.astype(np.int64).T
    out = ((acc.astype(f32) * MM_DEQUANT) * sca[:, None]) * scb[None, :]
    if bias is not None:
        out = out + bias[None, :]
    if cols.size:
        w_out = int8_dequantize(cb[:, cols], scb)
        out = out + (x[:, cols].astype(np.float64) @ w_out.T.astype(np.float64)).astype(f32)
    return out.astype(f32), cols


def half_exact(rng, shape, std):
    """Normal values rounded to float16, so the stored inputs (F16) are exactly the float32 inputs."""
    return (rng.standard_normal(shape) * std).astype(np.float16)


def write(name, tensors):
    os.makedirs(OUT, exist_ok=True)
    save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, os.path.join(OUT, name), metadata={"format": "pt"})


def four_bit_cases():
    write("codes.safetensors", {"nf4": NF4, "fp4": FP4, "dynamic": DYNAMIC})
    rng = np.random.default_rng(12)
    big = half_exact(rng, (96, 192), 0.05)           # 288 absmax values: one full nested block of 256 + 32
    big[5, :64] = 0                                  # one all-zero block
    small = half_exact(rng, (3, 67), 1.0).astype(f32)  # odd count: a partial last block and a padded nibble
    small[1, 0:61] = 0                               # block 1 (elements 64..127) is all zero
    small[0, 3] = -2.5                               # absmax carried by a negative value
    # block 2 (elements 128..191) has absmax 1: its values meet the pivots exactly, both float32 neighbours of each
    ties = [v for p in NF4_TREE + FP4_TREE for v in (p, np.nextafter(p, f32(2)), -p)]
    small.reshape(-1)[128:128 + len(ties)] = ties
    small.reshape(-1)[190] = 1.0
    for quant_type in ("nf4", "fp4"):
        for label, x, dq in (("dq", big, True), ("small", small, False)):
            packed, state = quantize_4bit(x.astype(f32), quant_type, dq)
            deq = dequantize_4bit(packed, state, quant_type, x.shape)
            write(f"{quant_type}_{label}.safetensors", {"input": x, "packed": packed, "dequantized": deq, **state})


def int8_case():
    rng = np.random.default_rng(8)
    w = (rng.standard_normal((24, 80)) * 0.1).astype(f32)
    w[3] = 0                                          # an all-zero row
    x = (rng.standard_normal((5, 80))).astype(f32)
    x[1, 7], x[3, 7], x[2, 40] = 9.5, -7.25, 6.0      # outlier columns 7 and 40 (>= 6.0 counts)
    bias = (rng.standard_normal(24) * 0.1).astype(f32)
    cb, scb, _ = int8_quantize_rows(w.astype(np.float16).astype(f32))
    y0, _ = int8_linear(x, cb, scb, bias, 0.0)
    y6, cols = int8_linear(x, cb, scb, bias, 6.0)
    write("int8.safetensors", {"weight": w, "CB": cb, "SCB": scb, "dequantized": int8_dequantize(cb, scb), "x": x, "bias": bias,
                               "y_threshold0": y0, "y_threshold6": y6, "outlier_cols": cols.astype(np.int32)})


TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32,
    "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32",
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
}
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def linear_shapes(c):
    h, i, d = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * d
    return {"self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, h),
            "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}


def bnb_checkpoints():
    """A tiny Llama saved as transformers + bitsandbytes save 4-bit (NF4, double quant) and 8-bit models.

    Keys, dtypes and shapes follow Linear4bit._save_to_state_dict / QuantState.as_dict(packed=True) and
    Linear8bitLt._save_to_state_dict; quantization_config is BitsAndBytesConfig.to_dict(). Also writes
    dequantized.safetensors: two layers' weights as bitsandbytes dequantises them.
    """
    rng = np.random.default_rng(31)
    c = TINY_LLAMA
    floats = {"model.embed_tokens.weight": rng.standard_normal((c["vocab_size"], c["hidden_size"])).astype(f32) * f32(0.5),
              "model.norm.weight": (1 + 0.1 * rng.standard_normal(c["hidden_size"])).astype(f32),
              "lm_head.weight": (rng.standard_normal((c["vocab_size"], c["hidden_size"])) * 0.1).astype(f32)}
    linears = {}
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        floats[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(c["hidden_size"])).astype(f32)
        floats[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(c["hidden_size"])).astype(f32)
        for name, shape in linear_shapes(c).items():
            linears[p + name] = (rng.standard_normal(shape) * 0.1).astype(f32)
    for label, qc in (("nf4", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}),
                      ("int8", {"load_in_8bit": True})):
        tensors, dequantized = dict(floats), {}
        for name, w in linears.items():
            if label == "nf4":
                packed, st = quantize_4bit(w, "nf4", True)
                qs = {"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": list(w.shape), "nested_blocksize": 256,
                      "nested_dtype": "float32", "nested_offset": float(st["offset"][0])}
                tensors.update({name + ".weight": packed, name + ".weight.absmax": st["absmax"], name + ".weight.quant_map": NF4,
                                name + ".weight.nested_absmax": st["nested_absmax"], name + ".weight.nested_quant_map": st["nested_quant_map"],
                                name + ".weight.quant_state.bitsandbytes__nf4": np.frombuffer(json.dumps(qs).encode("utf-8"), dtype=np.uint8)})
                dequantized[name + ".weight"] = dequantize_4bit(packed, st, "nf4", w.shape)
            else:
                cb, scb, _ = int8_quantize_rows(w.astype(np.float16).astype(f32))
                tensors.update({name + ".weight": cb, name + ".SCB": scb, name + ".weight_format": np.array(0, dtype=np.uint8)})
                dequantized[name + ".weight"] = int8_dequantize(cb, scb)
        folder = os.path.join(OUT, f"bnb-{label}-llama")
        os.makedirs(folder, exist_ok=True)
        save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        kept = ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight")
        save_file({k: dequantized[k] for k in kept}, os.path.join(folder, "dequantized.safetensors"), metadata={"format": "pt"})
        config = dict(c, quantization_config=bnb_config_dict(qc))
        with open(os.path.join(folder, "config.json"), "w") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
            fh.write("\n")


def bnb_config_dict(fields):
    """BitsAndBytesConfig(**fields).to_dict() in transformers 4.44 (float32 compute dtype, uint8 storage)."""
    in4, in8 = fields.get("load_in_4bit", False), fields.get("load_in_8bit", False)
    return {"_load_in_4bit": in4, "_load_in_8bit": in8, "bnb_4bit_compute_dtype": "float32", "bnb_4bit_quant_storage": "uint8",
            "bnb_4bit_quant_type": fields.get("bnb_4bit_quant_type", "fp4"), "bnb_4bit_use_double_quant": fields.get("bnb_4bit_use_double_quant", False),
            "llm_int8_enable_fp32_cpu_offload": False, "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
            "llm_int8_threshold": 6.0, "load_in_4bit": in4, "load_in_8bit": in8, "quant_method": "bitsandbytes"}


if __name__ == "__main__":
    four_bit_cases()
    int8_case()
    bnb_checkpoints()
    print("wrote", sorted(os.listdir(OUT)))
