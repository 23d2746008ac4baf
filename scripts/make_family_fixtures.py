"""Golden files for the newer model families (LLaMA 3 rope scaling, Qwen2 sliding window, Qwen3, Gemma 1/2/3, Phi-3,
OPT, BLOOM, GPT-NeoX, RoBERTa / XLM-RoBERTa),
made with Python transformers 4.44.0 + peft 0.15.2 (../shared/pyref), for test/families-golden.test.ts.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_family_fixtures.py [--only SUBSTR[,SUBSTR...]]
    # adapters saved by peft-ts load in Python peft with peft-ts' logits (needs `npx tsc -p .` first):
    PEFT_TS_ADAPTERS=/tmp/ts-adapters node --test dist/test/families-golden.test.js
    PEFT_TS_ADAPTERS=/tmp/ts-adapters /usr/bin/python3 scripts/make_family_fixtures.py --check-ts-adapters

Writes test/fixtures/families/{index.json, models/<name>/, peft/<case>/}, laid out like test/fixtures/reference (see
its README): models/<name>/ holds config.json + model.safetensors + inputs.json + expected.safetensors + case.json;
peft/<case>/ holds the adapter folder Python peft saved + expected.safetensors (adapter on / disabled / merged, greedy
generation) + case.json. Tiny random models with every special feature of the family switched on; seeded, one torch
thread, so reruns rewrite the same files.

Where transformers 4.44 is not the reference, this script supplies it, following transformers' published code:
- Qwen3 and Gemma 3 are not in 4.44: they are built on the 4.44 Qwen2 / Gemma 2 classes with their differences
  patched in here (per-head q/k RMSNorm, head_dim, biases, Gemma 3's local/global rope and sliding pattern).
- 4.44 applies Qwen2's sliding window only in flash attention (eager goldens would be full attention): the windowed
  layers here get a hand-built window mask added to their causal mask, as current transformers applies it.
- 4.44 LLaMA ignores head_dim (it is hidden_size / heads): the llama head_dim case patches the attention and rope
  sizes to head_dim, as current transformers does.
Generation goldens of models with sliding windows are greedy decoding by full recomputation of the sequence at every
step (what generate() does with use_cache=False; the cache classes of 4.44 differ per model), the others come from
generate() itself. Every greedy step needs a top-1/top-2 logit gap >= 2e-3, else the prompts are redrawn.
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import sys

import torch
from torch import nn

import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "families")
MIN_MARGIN = 2e-3
NOISE_STD = 0.1
FIRST_REAL_ID = 3
CLM_SPECIAL = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
# initializer_range 0.1 makes logits O(1), so that 1e-4 means something.
SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, initializer_range=0.1, **CLM_SPECIAL)

ROBERTA = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=40, initializer_range=0.1, pad_token_id=0, bos_token_id=1, eos_token_id=2)

# name: config class, model class, model_type written to config.json (if it differs), config kwargs, and how it is made.
MODELS = {
    "llama32-llama3-tied": dict(
        config="LlamaConfig", cls="LlamaForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=True,
                    rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=256)),
        seed=3001, seq=8, greedy="generate",
        notes="Llama 3.2 shape: tied embeddings, rope_type llama3 (theta 5e5, original context 256: the frequencies fall in all three bands)"),
    "llama-linear-headdim": dict(
        config="LlamaConfig", cls="LlamaForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, head_dim=12, rope_scaling=dict(rope_type="linear", factor=4.0)),
        seed=3002, seq=8, greedy="generate", patch="head_dim",
        notes="head_dim 12 with hidden 32 / 4 heads (transformers >= 4.45 behaviour, patched into 4.44); linear rope"),
    "llama-dynamic": dict(
        config="LlamaConfig", cls="LlamaForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=10, rope_scaling=dict(rope_type="dynamic", factor=2.0)),
        seed=3003, seq=8, greedy="generate",
        notes="dynamic NTK: max_position_embeddings 10, so generation (prompt 6 + 6 tokens) grows the base each step "
              "past position 10 while the cached keys keep their rotation"),
    "llama-yarn": dict(
        config="LlamaConfig", cls="LlamaForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, rope_scaling=dict(rope_type="yarn", factor=4.0)),
        seed=3004, seq=8, greedy="generate", notes="YaRN: default beta_fast/slow, attention factor 0.1 ln 4 + 1"),
    "llama-seqcls": dict(
        config="LlamaConfig", cls="LlamaForSequenceClassification",
        kwargs=dict(SMALL, max_position_embeddings=131072, num_labels=3, tie_word_embeddings=True,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=256), rope_theta=500000.0),
        seed=3005, seq=8, kind="seqcls"),
    "qwen25-window": dict(
        config="Qwen2Config", cls="Qwen2ForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, tie_word_embeddings=True, use_sliding_window=True,
                    sliding_window=3, max_window_layers=1),
        seed=3006, seq=9, greedy="recompute", patch="window",
        notes="Qwen2.5 shape (tied, q/k/v biases) with use_sliding_window: layer 1 (>= max_window_layers) attends to "
              "the last 3 positions (hand-built window mask added to 4.44's causal mask), layer 0 to all"),
    "qwen3": dict(
        config="Qwen2Config", cls="Qwen2ForCausalLM", model_type="qwen3", arch="Qwen3ForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, head_dim=12, tie_word_embeddings=True, attention_bias=False,
                    use_sliding_window=True, sliding_window=4, max_window_layers=1, rope_theta=1000000.0),
        seed=3007, seq=9, greedy="recompute", patch="qwen3",
        notes="Qwen3 reference on 4.44 Qwen2 classes: per-head RMSNorm on q and k (q_norm, k_norm over head_dim) "
              "before the rotation, head_dim 12, no biases, sliding window 4 on layer 1"),
    "gemma": dict(
        config="GemmaConfig", cls="GemmaForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, head_dim=12, hidden_act="gelu", hidden_activation=None),
        seed=3008, seq=8, greedy="generate",
        notes="Gemma: embeddings x sqrt(32), (1 + w) RMSNorm, head_dim 12; hidden_act 'gelu' with hidden_activation "
              "unset, which Gemma ignores in favour of gelu_pytorch_tanh"),
    "gemma2": dict(
        config="Gemma2Config", cls="Gemma2ForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, head_dim=8, query_pre_attn_scalar=12, sliding_window=4,
                    attn_logit_softcapping=2.0, final_logit_softcapping=3.0, cache_implementation=None),
        seed=3009, seq=9, greedy="recompute",
        notes="Gemma 2: soft-capping small enough to bite (attention 2.0, final 3.0), query_pre_attn_scalar 12, layer 0 "
              "slides over 4 positions, sandwich norms"),
    "gemma2-seqcls": dict(
        config="Gemma2Config", cls="Gemma2ForSequenceClassification",
        kwargs=dict(SMALL, max_position_embeddings=64, head_dim=8, query_pre_attn_scalar=12, sliding_window=4,
                    attn_logit_softcapping=2.0, final_logit_softcapping=3.0, num_labels=3, cache_implementation=None),
        seed=3010, seq=9, kind="seqcls"),
    "gemma3": dict(
        config="Gemma2Config", cls="Gemma2ForCausalLM", model_type="gemma3_text", arch="Gemma3ForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=64, head_dim=8, query_pre_attn_scalar=12, sliding_window=4,
                    attn_logit_softcapping=None, final_logit_softcapping=None, cache_implementation=None,
                    rope_theta=1000000.0, rope_local_base_freq=10000.0, sliding_window_pattern=2,
                    rope_scaling=dict(rope_type="linear", factor=8.0)),
        seed=3011, seq=9, greedy="recompute", patch="gemma3",
        notes="Gemma 3 text reference on 4.44 Gemma 2 classes: (1 + w) q_norm/k_norm, no soft-capping, sliding pattern "
              "2 (layer 0 local: theta 1e4, no scaling; layer 1 global: theta 1e6, linear x8)"),
    "phi3-longrope": dict(
        config="Phi3Config", cls="Phi3ForCausalLM",
        kwargs=dict(SMALL, max_position_embeddings=32, original_max_position_embeddings=8, sliding_window=None,
                    rope_scaling=dict(type="longrope", short_factor=[1.0, 1.3, 2.0, 3.1],
                                      long_factor=[1.2, 2.0, 3.9, 8.0])),
        seed=3012, seq=10, greedy="generate",
        notes="Phi-3 fused qkv_proj / gate_up_proj; LongRoPE with original context 8: the 10-token forward uses the "
              "long factors, generation switches from short to long at position 8 (attention factor sqrt(1 + ln 4 / ln 8))"),
    "opt": dict(
        config="OPTConfig", cls="OPTForCausalLM",
        kwargs=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                    max_position_embeddings=64, init_std=0.1, **CLM_SPECIAL),
        seed=3013, seq=8, greedy="generate", notes="OPT: learned positions from the attention mask (offset 2), tied head"),
    "opt-350m-style": dict(
        config="OPTConfig", cls="OPTForCausalLM",
        kwargs=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                    max_position_embeddings=64, init_std=0.1, do_layer_norm_before=False, word_embed_proj_dim=16,
                    **CLM_SPECIAL),
        seed=3014, seq=8, greedy="generate",
        notes="OPT-350m's layout: post-norm blocks, no final norm, embeddings of 16 projected in and out"),
    "opt-seqcls": dict(
        config="OPTConfig", cls="OPTForSequenceClassification",
        kwargs=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                    max_position_embeddings=64, init_std=0.1, num_labels=3, **CLM_SPECIAL),
        seed=3015, seq=8, kind="seqcls"),
    "bloom": dict(
        config="BloomConfig", cls="BloomForCausalLM",
        kwargs=dict(vocab_size=128, hidden_size=24, n_layer=2, n_head=6, initializer_range=0.1, **CLM_SPECIAL),
        seed=3016, seq=8, greedy="generate",
        notes="BLOOM: ALiBi with 6 heads (not a power of two: interleaved extra slopes), per-head fused query_key_value"),
    "bloom-seqcls": dict(
        config="BloomConfig", cls="BloomForSequenceClassification",
        kwargs=dict(vocab_size=128, hidden_size=24, n_layer=2, n_head=6, initializer_range=0.1, num_labels=3,
                    apply_residual_connection_post_layernorm=True, **CLM_SPECIAL),
        seed=3017, seq=8, kind="seqcls", notes="apply_residual_connection_post_layernorm switched on"),
    "gpt-neox": dict(
        config="GPTNeoXConfig", cls="GPTNeoXForCausalLM",
        kwargs=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    rotary_pct=0.5, max_position_embeddings=64, initializer_range=0.1, **CLM_SPECIAL),
        seed=3018, seq=8, greedy="generate",
        notes="Pythia layout: parallel residual, partial rotary (4 of 8 head dims), untied embed_out"),
    "gpt-neox-sequential": dict(
        config="GPTNeoXConfig", cls="GPTNeoXForCausalLM",
        kwargs=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    rotary_pct=1.0, max_position_embeddings=64, initializer_range=0.1, use_parallel_residual=False,
                    **CLM_SPECIAL),
        seed=3019, seq=8, greedy="generate", notes="sequential residual, full rotary"),
    "roberta-seqcls": dict(
        config="RobertaConfig", cls="RobertaForSequenceClassification",
        kwargs=dict(ROBERTA, num_labels=3), seed=3020, seq=9, kind="seqcls",
        notes="positions numbered from pad_token_id + 1 over real tokens (pads at pad_token_id); dense-tanh-out_proj head"),
    "roberta-tokcls": dict(
        config="RobertaConfig", cls="RobertaForTokenClassification",
        kwargs=dict(ROBERTA, num_labels=5), seed=3021, seq=9, kind="tokcls"),
    "xlm-roberta-seqcls": dict(
        config="XLMRobertaConfig", cls="XLMRobertaForSequenceClassification",
        kwargs=dict(ROBERTA, num_labels=2), seed=3022, seq=9, kind="seqcls"),
}

CASES = {
    "llama32-lora": dict(base="llama32-llama3-tied", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8),
                         notes="default targets (q_proj, v_proj)"),
    "qwen25-window-lora": dict(base="qwen25-window", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8)),
    "gemma2-lora": dict(base="gemma2", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8)),
    "phi3-lora": dict(base="phi3-longrope", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                        target_modules=["qkv_proj", "gate_up_proj"]),
                      notes="peft has no default targets for phi3 (0.15.2 nor later): the fused projections are named"),
    "opt-lora": dict(base="opt", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8)),
    "bloom-lora": dict(base="bloom", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8)),
    "gpt-neox-lora": dict(base="gpt-neox", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8)),
    "roberta-seqcls-lora": dict(base="roberta-seqcls", method=dict(task_type="SEQ_CLS", r=4, lora_alpha=8),
                                notes="default targets (query, value); the classifier head is trained and saved "
                                      "(modules_to_save, added by peft for SEQ_CLS)"),
}


# ------------------------------------------------------------------------------------------ reference patches
def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(position_ids, dim, base, factor=1.0):
    """cos, sin [B, T, dim] as transformers computes them (float32 inv_freq, linear factor divides it)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    inv_freq = inv_freq / factor
    freqs = (inv_freq[None, :, None].expand(position_ids.shape[0], -1, 1) @ position_ids[:, None, :].float())
    emb = torch.cat((freqs.transpose(1, 2),) * 2, dim=-1)
    return emb.cos(), emb.sin()


def window_mask(mask, window):
    """The causal mask [B, 1, q, k] with keys `window` or more positions before their query masked too."""
    q, k = mask.shape[-2:]
    i = torch.arange(q)[:, None] + (k - q)
    j = torch.arange(k)[None, :]
    return mask.masked_fill(j <= i - window, torch.finfo(mask.dtype).min)


def with_window(layer, window):
    orig = layer.forward

    def forward(*args, attention_mask=None, **kwargs):
        if attention_mask is not None:
            attention_mask = window_mask(attention_mask, window)
        return orig(*args, attention_mask=attention_mask, **kwargs)

    layer.forward = forward


def normed_attention_forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None,
                             output_attentions=False, use_cache=False, cache_position=None, **kwargs):
    """Qwen3 / Gemma 3 attention: q and k normalised per head (over head_dim) before the rotation."""
    b, t, _ = hidden_states.shape
    hd = self.head_dim
    q = self.q_norm(self.q_proj(hidden_states).view(b, t, -1, hd)).transpose(1, 2)
    k = self.k_norm(self.k_proj(hidden_states).view(b, t, -1, hd)).transpose(1, 2)
    v = self.v_proj(hidden_states).view(b, t, -1, hd).transpose(1, 2)
    cos, sin = rope_cos_sin(position_ids, hd, self.ref_rope_base, self.ref_rope_factor)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    if past_key_value is not None:
        k, v = past_key_value.update(k, v, self.layer_idx, {"cache_position": cache_position})
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    w = torch.matmul(q, k.transpose(2, 3)) * self.ref_scaling
    if attention_mask is not None:
        w = w + attention_mask[:, :, :, : k.shape[-2]]
    w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(w, v).transpose(1, 2).reshape(b, t, -1)
    return self.o_proj(out), None, past_key_value


def make_normed_attention(attn, cfg, norm_cls, bias, rope_base, rope_factor, scaling):
    hd, h, kv, hidden = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
    attn.head_dim = hd
    attn.q_proj = nn.Linear(hidden, h * hd, bias=bias)
    attn.k_proj = nn.Linear(hidden, kv * hd, bias=bias)
    attn.v_proj = nn.Linear(hidden, kv * hd, bias=bias)
    attn.o_proj = nn.Linear(h * hd, hidden, bias=bias)
    attn.q_norm = norm_cls(hd, eps=cfg.rms_norm_eps)
    attn.k_norm = norm_cls(hd, eps=cfg.rms_norm_eps)
    attn.ref_rope_base, attn.ref_rope_factor, attn.ref_scaling = rope_base, rope_factor, scaling
    attn.forward = normed_attention_forward.__get__(attn)


def patch_model(model, spec):
    """Applies the spec's reference patch to a freshly built model (before its weights are initialised or loaded)."""
    kind = spec.get("patch")
    if kind not in ("window", "qwen3", "gemma3"):
        return model
    cfg = model.config
    layers = model.model.layers
    if kind in ("window", "qwen3"):
        for i, layer in enumerate(layers):
            if i >= cfg.max_window_layers:
                with_window(layer, cfg.sliding_window)
    if kind == "qwen3":
        from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
        for layer in layers:
            make_normed_attention(layer.self_attn, cfg, Qwen2RMSNorm, False, cfg.rope_theta, 1.0, cfg.head_dim ** -0.5)
    if kind == "gemma3":
        from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
        factor = cfg.rope_scaling["factor"]
        for i, layer in enumerate(layers):
            local = bool((i + 1) % cfg.sliding_window_pattern)
            layer.is_sliding = local
            layer.self_attn.sliding_window = cfg.sliding_window if local else None
            base, f = (cfg.rope_local_base_freq, 1.0) if local else (cfg.rope_theta, factor)
            make_normed_attention(layer.self_attn, cfg, Gemma2RMSNorm, False, base, f, cfg.query_pre_attn_scalar ** -0.5)
    return model


@contextlib.contextmanager
def head_dim_rope(cfg):
    """4.44's rope sizes itself by hidden_size / heads: during construction, a partial_rotary_factor makes it head_dim."""
    hd = getattr(cfg, "head_dim", None)
    base = cfg.hidden_size // cfg.num_attention_heads
    if hd and hd != base:
        cfg.partial_rotary_factor = hd / base
    try:
        yield
    finally:
        if hasattr(cfg, "partial_rotary_factor"):
            del cfg.partial_rotary_factor


def resize_llama_attention(model):
    """Current transformers' LLaMA: projections sized by config.head_dim."""
    cfg = model.config
    hd, h, kv, hidden = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
    for layer in model.model.layers:
        a = layer.self_attn
        a.head_dim = hd
        a.q_proj = nn.Linear(hidden, h * hd, bias=cfg.attention_bias)
        a.k_proj = nn.Linear(hidden, kv * hd, bias=cfg.attention_bias)
        a.v_proj = nn.Linear(hidden, kv * hd, bias=cfg.attention_bias)
        a.o_proj = nn.Linear(h * hd, hidden, bias=cfg.attention_bias)


def build(spec, seed):
    """The spec's model with random weights (transformers' init, seeded), patched; eval mode, eager attention."""
    cfg = getattr(transformers, spec["config"])(**spec["kwargs"])
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    with head_dim_rope(cfg) if spec.get("patch") == "head_dim" else contextlib.nullcontext():
        model = getattr(transformers, spec["cls"])(cfg)
    if spec.get("patch") == "head_dim":
        resize_llama_attention(model)
    patch_model(model, spec)
    torch.manual_seed(seed + 1)
    model.apply(model._init_weights)  # the patched-in modules get the model's init too
    with torch.no_grad():  # norm weights and biases start at 1 / 0: make them random so that loading them is tested
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape) * NOISE_STD)
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    return model.eval()


def load(spec, folder):
    """A model built like `build` with the weights of folder/model.safetensors."""
    model = build(spec, 0)
    missing, unexpected = model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")), strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    assert set(missing) <= tied and not unexpected, (missing, unexpected)
    if tied:
        model.tie_weights()
    return model.eval()


# ------------------------------------------------------------------------------------------ inputs and goldens
def make_inputs(vocab, seq, seed, kind, num_labels=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_REAL_ID, vocab, (2, seq), generator=g)
    mask = torch.ones(2, seq, dtype=torch.long)
    ids[1, seq - 3:] = 0
    mask[1, seq - 3:] = 0
    x = dict(input_ids=ids, attention_mask=mask)
    if kind == "seqcls":
        x["labels"] = torch.randint(0, num_labels, (2,), generator=g)
    elif kind == "tokcls":
        x["labels"] = torch.randint(0, num_labels, (2, seq), generator=g).masked_fill(mask == 0, -100)
    else:
        x["labels"] = ids.masked_fill(mask == 0, -100)
        x.update(gen_inputs(vocab, g))
    return x


def gen_inputs(vocab, g):
    """Generation prompts: batch 2, length 6, row 1 LEFT-padded by 2."""
    ids = torch.randint(FIRST_REAL_ID, vocab, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    ids[1, :2] = 0
    mask[1, :2] = 0
    return dict(gen_input_ids=ids, gen_attention_mask=mask)


def greedy(model, x, mode):
    """6 greedy tokens for the left-padded prompts; returns (ids, smallest top-1/top-2 gap over the steps)."""
    ids, mask = x["gen_input_ids"], x["gen_attention_mask"]
    with torch.no_grad():
        if mode == "generate":
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True)
            scores, seqs = out.scores, out.sequences
        else:
            scores = []
            for _ in range(6):
                pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
                s = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
                scores.append(s)
                ids = torch.cat([ids, s.argmax(-1, keepdim=True)], dim=1)
                mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
            seqs = ids
    margin = min(float((s.topk(2).values[:, 0] - s.topk(2).values[:, 1]).min()) for s in scores)
    return seqs.clone(), margin


def greedy_with_margin(model, x, vocab, seed, mode):
    ids, margin = greedy(model, x, mode)
    k = 0
    while margin < MIN_MARGIN and k < 50:
        k += 1
        x = dict(x, **gen_inputs(vocab, torch.Generator().manual_seed(seed + k)))
        ids, margin = greedy(model, x, mode)
    assert margin >= MIN_MARGIN, f"no prompt with a clear greedy margin (best {margin})"
    return ids, margin, x


def forward(model, x, labels=False, **kw):
    keys = ["input_ids", "attention_mask"] + (["labels"] if labels else [])
    with torch.no_grad():
        if model.config.model_type not in ("roberta", "xlm-roberta"):  # decoders: no cache (the windows' patch needs that)
            kw["use_cache"] = False
        return model(**{k: x[k] for k in keys}, **kw)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def save_tensors(path, tensors, note):
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt", "made_by": note})


def versions():
    return dict(transformers=transformers.__version__, peft=peft.__version__, torch=torch.__version__)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def make_model(name, spec):
    folder = os.path.join(ROOT, "models", name)
    fresh_dir(folder)
    model = build(spec, spec["seed"])
    model.save_pretrained(folder, safe_serialization=True)
    config = json.load(open(os.path.join(folder, "config.json")))
    if spec.get("model_type"):  # a reference model: config.json says what it stands for
        config.update(model_type=spec["model_type"], architectures=[spec["arch"]])
    if spec.get("patch") in ("head_dim", "qwen3"):
        config["head_dim"] = spec["kwargs"]["head_dim"]
    config.pop("transformers_version", None)
    write_json(os.path.join(folder, "config.json"), config)
    loaded = load(spec, folder)
    kind = spec.get("kind", "clm")
    vocab = spec["kwargs"]["vocab_size"]
    x = make_inputs(vocab, spec["seq"], spec["seed"] + 7, kind, spec["kwargs"].get("num_labels"))
    out = forward(loaded, x, labels=True, output_hidden_states=True)
    exp = dict(logits=out.logits, loss=out.loss.reshape(1))
    for i, h in enumerate(out.hidden_states):
        exp[f"hidden_states_{i}"] = h
    record = dict(name=name, cls=spec["arch"] if spec.get("arch") else spec["cls"], notes=spec.get("notes", ""),
                  config=spec["kwargs"], seed=spec["seed"], versions=versions())
    if spec.get("greedy"):
        exp["generate_greedy"], margin, x = greedy_with_margin(loaded, x, vocab, spec["seed"] + 100, spec["greedy"])
        record["generate"] = dict(mode=spec["greedy"], max_new_tokens=6, min_top2_logit_margin=margin)
    write_json(os.path.join(folder, "inputs.json"), {k: v.tolist() for k, v in x.items()})
    save_tensors(os.path.join(folder, "expected.safetensors"), exp, f"make_family_fixtures.py {name}")
    record["expected"] = {k: list(v.shape) for k, v in exp.items()}
    write_json(os.path.join(folder, "case.json"), record)
    return record


def add_noise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * NOISE_STD)


def make_case(name, case, models=None, make_config=LoraConfig):
    """A Python peft adapter (LoRA unless `make_config` says otherwise; case["peft_type"] names it) on its base model
    (from `models`, default MODELS), with its goldens after save and load, and what the case says about its files."""
    spec = (models or MODELS)[case["base"]]
    base_folder = os.path.join(ROOT, "models", case["base"])
    folder = os.path.join(ROOT, "peft", name)
    fresh_dir(folder)
    adir = os.path.join(folder, "adapter")
    x = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(base_folder, "inputs.json"))).items()}
    seed = spec["seed"] + 500
    torch.manual_seed(seed)
    pm = get_peft_model(load(spec, base_folder), make_config(**case["method"]))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    add_noise(pm, seed + 1)
    pm.eval()
    pm.save_pretrained(adir)
    cfg_path = os.path.join(adir, "adapter_config.json")
    adapter_config = json.load(open(cfg_path))
    adapter_config["base_model_name_or_path"] = f"models/{case['base']}"
    write_json(cfg_path, adapter_config)

    lm = PeftModel.from_pretrained(load(spec, base_folder), adir).eval()
    exp = dict(logits_adapter=forward(lm, x).logits, loss_adapter=forward(lm, x, labels=True).loss.reshape(1))
    with lm.disable_adapter():
        exp["logits_disabled"] = forward(lm, x).logits
    margin = None
    if spec.get("greedy"):
        exp["generate_greedy_adapter"], margin, x2 = greedy_with_margin(lm, x, spec["kwargs"]["vocab_size"], seed + 100,
                                                                         spec["greedy"])
        if x2 is not x:
            write_json(os.path.join(folder, "inputs.json"), {k: v.tolist() for k, v in x2.items()})
    exp["logits_merged"] = forward(lm.merge_and_unload(), x).logits
    save_tensors(os.path.join(folder, "expected.safetensors"), exp, f"{os.path.basename(sys.argv[0])} {name}")
    sd = load_file(os.path.join(adir, "adapter_model.safetensors"))
    trainable, total = pm.get_nb_trainable_parameters()
    record = dict(base=f"models/{case['base']}", task_type=case["method"]["task_type"], peft_type=case.get("peft_type", "LORA"),
                  config=case["method"], print_trainable_parameters=buf.getvalue().strip(), trainable_params=trainable,
                  all_params=total, notes=case.get("notes", "") + f"; trainable tensors += N(0, {NOISE_STD}^2) noise "
                  f"(torch.Generator seed {seed + 1}) after get_peft_model (torch.manual_seed({seed}))",
                  generate=dict(mode=spec.get("greedy"), min_top2_logit_margin=margin),
                  adapter_tensors={k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sorted(sd.items())},
                  adapter_config_keys=sorted(adapter_config), expected={k: list(v.shape) for k, v in exp.items()},
                  versions=versions())
    write_json(os.path.join(folder, "case.json"), record)
    return record


def check_ts_adapters(models=None, cases=None):
    """Adapters saved by peft-ts for these cases (the golden test writes them to $PEFT_TS_ADAPTERS/<case>) load in
    Python peft and give the logits peft-ts recorded beside them."""
    models, cases = models or MODELS, cases or CASES
    root = os.environ.get("PEFT_TS_ADAPTERS")
    if not root:
        return
    for name in sorted(os.listdir(root)):
        case = cases[name]
        spec = models[case["base"]]
        model = PeftModel.from_pretrained(load(spec, os.path.join(ROOT, "models", case["base"])), os.path.join(root, name))
        x = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(ROOT, "models", case["base"], "inputs.json"))).items()}
        want = load_file(os.path.join(root, name, "logits.safetensors"))["logits"]
        diff = float((forward(model.eval(), x).logits - want).abs().max())
        print(f"peft-ts adapter {name:24s} loads in Python peft; max |logits diff| {diff:.2e}")
        assert diff < 1e-4, name


def make_goldens(sel, models, cases, make_case_fn):
    """The models and cases whose names contain one of `sel` (all when empty), and index.json; `make_case_fn(name,
    case)` makes a case's adapter and goldens."""
    pick = lambda n: not sel or any(s in n for s in sel)  # noqa: E731
    index_path = os.path.join(ROOT, "index.json")
    index = json.load(open(index_path)) if sel and os.path.exists(index_path) else dict(models={}, cases={})
    for name, spec in models.items():
        if pick(name):
            r = make_model(name, spec)
            index["models"][name] = {"class": r["cls"]}
            print(f"model {name:22s} {r['cls']:36s} {r.get('generate', {})}", flush=True)
    for name, case in cases.items():
        if pick(name):
            r = make_case_fn(name, case)
            index["cases"][name] = dict(base=r["base"], peft_type=r["peft_type"], task_type=r["task_type"])
            print(f"case  {name:24s} {r['print_trainable_parameters']}", flush=True)
    index["versions"] = versions()
    index["models"] = dict(sorted(index["models"].items()))
    index["cases"] = dict(sorted(index["cases"].items()))
    write_json(index_path, index)


def cli(doc, root, models, cases, make_case_fn, check_fn):
    """The command line of a golden script (this one, make_method_fixtures_b.py, …): --only SUBSTR,... remakes some
    models/cases into root/index.json; --check-ts-adapters runs check_fn instead."""
    global ROOT
    if os.environ.get("PYTHONHASHSEED") != "0":  # peft writes target_modules in set order: pin it
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated substrings of model/case names")
    ap.add_argument("--check-ts-adapters", action="store_true", help="only load the adapters in $PEFT_TS_ADAPTERS")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ROOT = root  # make_model writes under ROOT
    if args.check_ts_adapters:
        check_fn()
        return
    make_goldens([s for s in args.only.split(",") if s], models, cases, make_case_fn)

def main():
    cli(__doc__, ROOT, MODELS, CASES, make_case, check_ts_adapters)

if __name__ == "__main__":
    main()
