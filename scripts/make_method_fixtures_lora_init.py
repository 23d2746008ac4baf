"""Golden files for LoRA's base-weight initialisers (init_lora_weights "pissa" and "olora"), lora_bias,
layer_replication, trainable_token_indices and the TRAINABLE_TOKENS method (with a tied LM head), made with
Python transformers 4.44.0 + peft 0.15.2 (../shared/pyref), for test/lora-init.test.ts.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_method_fixtures_lora_init.py [--only SUBSTR[,SUBSTR...]]
    # adapters saved by peft-ts load in Python peft with peft-ts' logits (needs `npx tsc -p .` first):
    PEFT_TS_ADAPTERS=/tmp/ts-lora-init node --test dist/test/lora-init.test.js
    PEFT_TS_ADAPTERS=/tmp/ts-lora-init /usr/bin/python3 scripts/make_method_fixtures_lora_init.py --check-ts-adapters

Writes test/fixtures/methods-lora-init/ in the GoldenSet layout of scripts/make_family_fixtures.py (whose model
builder, case maker and adapter check it reuses): models/<name>/ and peft/<case>/ (the adapter Python peft saved
after N(0, 0.1^2) noise on the trainable tensors, expected logits with the adapter on / disabled / merged, greedy
generation). Loading such an adapter in peft re-runs the initialiser on the original base weight (that is how
peft 0.15.2 restores the residual), so the disabled logits are those of the residual model.

With --check-ts-adapters, "<case>-as-lora" folders are PiSSA/OLoRA adapters peft-ts saved converted to a plain LoRA
(savePretrained's pathInitialModelForWeightConversion, peft's path_initial_model_for_weight_conversion); they load on
the original base model.

Each init_lora_weights case also gets init.safetensors: the adapter tensors right after get_peft_model (before noise), under the
saved key names, and the residual base weights ("<module>.base_layer.weight"), to check the initialisers' values.
PiSSA's singular vectors are determined up to sign only; the test compares them up to sign.

layer_replication's case has no merged logits (see its notes).

Not here: "pissa_niter_<n>" (torch.svd_lowrank draws its start matrix from torch's generator, and peft redraws it on
every load, so there is no stable golden: the test checks its algebra instead) and LoftQ (in
make_method_fixtures_loftq.py).
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_family_fixtures as fam  # noqa: E402
from peft import LoraConfig, TrainableTokensConfig, get_peft_model  # noqa: E402

fam.ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "methods-lora-init")

SPECIAL = fam.CLM_SPECIAL
fam.MODELS = {
    "llama": dict(config="LlamaConfig", cls="LlamaForCausalLM", kwargs=dict(fam.SMALL, max_position_embeddings=64),
                  seed=5001, seq=8, greedy="generate"),
    "qwen2": dict(config="Qwen2Config", cls="Qwen2ForCausalLM", kwargs=dict(fam.SMALL, max_position_embeddings=64),
                  seed=5002, seq=8, greedy="generate", notes="q/k/v projections with biases (for lora_bias's merge)"),
    "llama-tied": dict(config="LlamaConfig", cls="LlamaForCausalLM",
                       kwargs=dict(fam.SMALL, max_position_embeddings=64, tie_word_embeddings=True),
                       seed=5004, seq=8, greedy="generate", notes="LM head tied to the input embeddings"),
    "gpt2": dict(config="GPT2Config", cls="GPT2LMHeadModel",
                 kwargs=dict(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64, initializer_range=0.1,
                             **SPECIAL),
                 seed=5003, seq=8, greedy="generate", notes="Conv1D layers: weights stored [in, out] (fan_in_fan_out)"),
}

fam.CASES = {
    "llama-pissa": dict(base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights="pissa"),
                        notes="default targets (q_proj, v_proj)"),
    "llama-pissa-rslora": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights="pissa", use_rslora=True,
                                  target_modules=["o_proj", "up_proj", "down_proj"], rank_pattern={"down_proj": 2}),
        notes="scaling alpha / sqrt(r); a wide (down_proj) and a tall (up_proj) weight; rank_pattern"),
    "llama-olora": dict(base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights="olora",
                                                  target_modules=["q_proj", "gate_proj", "down_proj"]),
                        notes="square, tall (gate_proj) and wide (down_proj) QR"),
    "gpt2-pissa": dict(base="gpt2", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=16, init_lora_weights="pissa"),
                       notes="default target c_attn (Conv1D, [in, out] storage: peft transposes for the SVD)"),
    "llama-layer-replication": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, layer_replication=[[0, 2], [1, 2]]),
        notes="layers [0, 1, 1]: the copy of layer 1 shares its weights and has its own LoRA; no merged logits (peft "
              "0.15.2 means to refuse merging replicated layers, but its check never fires and it folds every copy's "
              "adapter into the shared weights)"),
    "llama-trainable-tokens": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", token_indices=[6, 13, 65, 84], target_modules=["embed_tokens"]),
        peft_type="TRAINABLE_TOKENS", notes="untied head: only the input embedding rows change (ids that the inputs use)"),
    "llama-tied-trainable-tokens": dict(
        base="llama-tied", method=dict(task_type="CAUSAL_LM", token_indices=[4, 91, 48, 22]), peft_type="TRAINABLE_TOKENS",
        notes="default target (the input embeddings); the tied lm_head is wrapped too and shares the delta (both keys "
              "saved)"),
    "llama-tied-lora-tokens": dict(
        base="llama-tied", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, trainable_token_indices=[4, 91, 48, 22]),
        notes="LoRA's trainable_token_indices on the input embeddings; the tied lm_head shares the rows (only the "
              "embedding's key is saved)"),
    "llama-lora-tokens-dict": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj"],
                                  trainable_token_indices={"embed_tokens": [6, 13, 65]}),
        notes="trainable_token_indices as module name -> ids, untied head"),
    "qwen2-lora-bias": dict(base="qwen2", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_bias=True),
                            notes="scaling 2: peft's forward scales lora_B's bias, its merge adds it unscaled, so the "
                                  "merged logits differ from the adapter's (recorded as peft computes them)"),
}


class _Cases(dict):
    """The cases, where "<case>-as-lora" (a PiSSA/OLoRA adapter peft-ts saved converted to plain LoRA) is its case."""

    def __missing__(self, name):
        return self[name.removesuffix("-as-lora")]


fam.CASES = _Cases(fam.CASES)


def config_for(**method):
    """make_family_fixtures builds every case with LoraConfig: trainable-tokens cases (token_indices) get their config."""
    return TrainableTokensConfig(**method) if "token_indices" in method else LoraConfig(**method)


fam.LoraConfig = config_for


def set_peft_type(name, case):
    """The case's peft_type in case.json and index.json (make_family_fixtures writes LORA)."""
    path = os.path.join(fam.ROOT, "peft", name, "case.json")
    record = json.load(open(path))
    record["peft_type"] = case.get("peft_type", "LORA")
    fam.write_json(path, record)
    return record


def make_init(name, case):
    """init.safetensors: the adapter right after get_peft_model and the residual base weights it left."""
    spec = fam.MODELS[case["base"]]
    torch.manual_seed(spec["seed"] + 500)  # as make_case does before get_peft_model
    pm = get_peft_model(fam.load(spec, os.path.join(fam.ROOT, "models", case["base"])), LoraConfig(**case["method"]))
    out = {}
    for key, p in pm.named_parameters():
        key = key.removeprefix("base_model.model.")
        if "lora_" in key:
            out[key.replace(".default", "")] = p
        elif key.endswith(".base_layer.weight"):
            out[key] = p
    fam.save_tensors(os.path.join(fam.ROOT, "peft", name, "init.safetensors"), out,
                     f"make_method_fixtures_lora_init.py {name} (before noise)")


def drop_merged(name, record):
    """Remove logits_merged from a case's goldens."""
    folder = os.path.join(fam.ROOT, "peft", name)
    exp = load_file(os.path.join(folder, "expected.safetensors"))
    del exp["logits_merged"]
    fam.save_tensors(os.path.join(folder, "expected.safetensors"), exp, f"make_method_fixtures_lora_init.py {name}")
    del record["expected"]["logits_merged"]
    fam.write_json(os.path.join(folder, "case.json"), record)


def main():
    orig = fam.make_case

    def make_case(name, case):
        record = orig(name, case)
        if "init_lora_weights" in case["method"]:
            make_init(name, case)
        if case["method"].get("layer_replication"):
            drop_merged(name, record)
        return set_peft_type(name, case)

    fam.make_case = make_case
    fam.main()
    index_path = os.path.join(fam.ROOT, "index.json")
    index = json.load(open(index_path))
    for name, entry in index["cases"].items():
        entry["peft_type"] = fam.CASES[name].get("peft_type", "LORA")
    fam.write_json(index_path, index)


if __name__ == "__main__":
    main()
