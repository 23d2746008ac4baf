"""Golden files for HRA, Bone, LN tuning and Poly, made with Python peft 0.15.2 + transformers 4.44 (../shared/pyref),
for test/methods-b.test.ts.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_method_fixtures_b.py [--only SUBSTR[,SUBSTR...]]
    # adapters saved by peft-ts load in Python peft with peft-ts' logits (needs `npx tsc -p .` first):
    PEFT_TS_ADAPTERS=/tmp/ts-adapters-b node --test dist/test/methods-b.test.js
    PEFT_TS_ADAPTERS=/tmp/ts-adapters-b /usr/bin/python3 scripts/make_method_fixtures_b.py --check-ts-adapters

Writes test/fixtures/methods-b/{index.json, models/<name>/, peft/<case>/} in the GoldenSet layout of
test/fixtures/families (this script reuses make_family_fixtures.py's model builder, inputs and greedy decoding). Every
case is the adapter folder peft saved (trainable tensors moved off their identity initialisation by seeded noise) and
expected.safetensors: logits with the adapter on, disabled and merged (merge_and_unload), the loss, and 6 greedy tokens.
The tiny models have sizes that reach every branch: Bone with r not dividing in_features (peft pads the input), Bone's
"bat" blocks, HRA with and without Gram-Schmidt, LN tuning over RMSNorm (LLaMA) and LayerNorm with bias (GPT-2).

Poly: peft 0.15.2 hands task_ids to its layers through register_forward_pre_hook(..., with_kwargs=True), which needs
torch >= 2.0; pyref's torch is 1.13. So Poly's outputs come from a small hand-written reference of poly.Linear's
forward (poly_forward below, following peft's published code: router sigmoid mixture, einsum of the skills, x.A.B / r),
patched into each Poly layer with the batch's task ids; the script first checks it against peft's own
poly.Linear.forward(x, task_ids=...) called directly. Poly adapters cannot be merged (peft has no merge for them).
The adapter, its config and its saved keys are peft's own.
"""

import contextlib
import io
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_family_fixtures as fam  # noqa: E402
from peft import BoneConfig, HRAConfig, LNTuningConfig, PeftModel, PolyConfig, get_peft_model  # noqa: E402
from peft.tuners.poly.layer import Linear as PolyLinear  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "methods-b")
TINY = dict(vocab_size=64, initializer_range=0.1, **fam.CLM_SPECIAL)

MODELS = {
    "llama": dict(config="LlamaConfig", cls="LlamaForCausalLM", seed=4001, seq=8, greedy="generate",
                  kwargs=dict(TINY, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=32),
                  notes="hidden 24, intermediate 40: r = 5 does not divide 24 or 40 (Bone's padded branch), r = 4 does"),
    "gpt2": dict(config="GPT2Config", cls="GPT2LMHeadModel", seed=4002, seq=8, greedy="generate",
                 kwargs=dict(TINY, n_embd=24, n_layer=2, n_head=4, n_positions=32),
                 notes="LayerNorm with bias; Conv1D projections, which HRA and Bone refuse"),
}

CLM = dict(task_type="CAUSAL_LM")
CASES = {
    "llama-ln-tuning": dict(base="llama", cls=LNTuningConfig, method=dict(CLM),
                            notes="default targets: input_layernorm, post_attention_layernorm, norm (RMSNorm)"),
    "gpt2-ln-tuning": dict(base="gpt2", cls=LNTuningConfig, method=dict(CLM, target_modules=["ln_1", "ln_f"]),
                           notes="LayerNorm weight and bias copies"),
    "llama-hra": dict(base="llama", cls=HRAConfig, method=dict(CLM, r=4),
                      notes="default targets q_proj, v_proj; symmetric init (even r); product of reflections"),
    "llama-hra-gs": dict(base="llama", cls=HRAConfig,
                         method=dict(CLM, r=3, apply_GS=True, target_modules=["q_proj", "k_proj", "down_proj"]),
                         notes="Gram-Schmidt orthogonalised reflections, odd r (kaiming init)"),
    "llama-bone": dict(base="llama", cls=BoneConfig, method=dict(CLM, r=4, target_modules=["q_proj", "v_proj", "up_proj"]),
                       notes="blocks of 4 columns share one [r, out] update"),
    "llama-bone-pad": dict(base="llama", cls=BoneConfig, method=dict(CLM, r=5, target_modules=["q_proj", "down_proj"]),
                           notes="r = 5 divides neither 24 nor 40: the input is zero-padded to a multiple of r"),
    "llama-bone-bat": dict(base="llama", cls=BoneConfig,
                           method=dict(CLM, r=4, init_weights="bat", target_modules=["q_proj", "k_proj", "gate_proj"]),
                           notes="Bat: W' = W + W_ij b_i + b_i per [r, r] block"),
    "llama-poly": dict(base="llama", cls=PolyConfig, merge=False, task_ids=[2, 0],
                       method=dict(CLM, r=2, n_tasks=3, n_skills=4, n_splits=2, init_weights=False,
                                   target_modules=["q_proj", "v_proj", "down_proj"]),
                       notes="3 tasks, 4 skills, 2 splits; rows of tasks 2 and 0 (hand-written forward, see above)"),
}


def poly_forward(layer, x, task_ids):
    """poly.Linear.forward of peft 0.15.2 written out (eval mode): per row, the task's sigmoid mixture of skills."""
    result = layer.base_layer(x)
    if layer.disable_adapters:
        return result
    for name in layer.active_adapters:
        router = layer.poly_router[name]
        logits = router.module_logits[task_ids].view(-1, router.n_splits, router.n_skills)
        gates = torch.sigmoid(logits)
        w = gates / (gates.sum(dim=-1, keepdim=True) + 1e-12)
        a = torch.einsum("bqs,qsdr->bqdr", w, layer.poly_lora_A[name]).reshape(x.shape[0], layer.in_features, -1)
        b = torch.einsum("bqs,qsrd->bqrd", w, layer.poly_lora_B[name])
        b = b.transpose(1, 2).reshape(x.shape[0], -1, layer.out_features)
        result = result + x.bmm(a).bmm(b) / layer.r[name]
    return result


@contextlib.contextmanager
def routed(model, task_ids):
    """Every Poly layer runs poly_forward with these task ids (what peft's with_kwargs pre-hook does on torch >= 2)."""
    layers = [m for m in model.modules() if isinstance(m, PolyLinear)]
    g = torch.Generator().manual_seed(0)
    for layer in layers:  # the hand-written forward agrees with peft's own layer forward
        x = torch.randn(len(task_ids), 3, layer.in_features, generator=g)
        with torch.no_grad():
            diff = (poly_forward(layer, x, task_ids) - PolyLinear.forward(layer, x, task_ids=task_ids)).abs().max()
        assert float(diff) < 1e-6, diff
        layer.forward = (lambda lyr: lambda x, *a, **k: poly_forward(lyr, x, task_ids))(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def make_case(name, case):
    spec = MODELS[case["base"]]
    base_folder = os.path.join(ROOT, "models", case["base"])
    folder = os.path.join(ROOT, "peft", name)
    fam.fresh_dir(folder)
    adir = os.path.join(folder, "adapter")
    x = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(base_folder, "inputs.json"))).items()}
    if case.get("task_ids"):
        x["task_ids"] = torch.tensor(case["task_ids"])
    seed = spec["seed"] + 500 + len(name)
    torch.manual_seed(seed)
    pm = get_peft_model(fam.load(spec, base_folder), case["cls"](**case["method"]))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    fam.add_noise(pm, seed + 1)
    pm.eval()
    pm.save_pretrained(adir)
    cfg_path = os.path.join(adir, "adapter_config.json")
    adapter_config = json.load(open(cfg_path))
    adapter_config["base_model_name_or_path"] = f"models/{case['base']}"
    fam.write_json(cfg_path, adapter_config)

    lm = PeftModel.from_pretrained(fam.load(spec, base_folder), adir).eval()
    route = routed(lm, x["task_ids"]) if "task_ids" in x else contextlib.nullcontext()
    route.__enter__()
    exp = dict(logits_adapter=fam.forward(lm, x).logits, loss_adapter=fam.forward(lm, x, labels=True).loss.reshape(1))
    with lm.disable_adapter():
        exp["logits_disabled"] = fam.forward(lm, x).logits
    exp["generate_greedy_adapter"], margin, x2 = fam.greedy_with_margin(lm, x, spec["kwargs"]["vocab_size"], seed + 100,
                                                                         spec["greedy"])
    if x2 is not x or "task_ids" in x:
        fam.write_json(os.path.join(folder, "inputs.json"), {k: v.tolist() for k, v in x2.items()})
    route.__exit__(None, None, None)
    if case.get("merge", True):
        exp["logits_merged"] = fam.forward(lm.merge_and_unload(), x).logits
    fam.save_tensors(os.path.join(folder, "expected.safetensors"), exp, f"make_method_fixtures_b.py {name}")
    sd = load_file(os.path.join(adir, "adapter_model.safetensors"))
    trainable, total = pm.get_nb_trainable_parameters()
    peft_type = adapter_config["peft_type"]
    record = dict(base=f"models/{case['base']}", task_type="CAUSAL_LM", peft_type=peft_type, config=case["method"],
                  print_trainable_parameters=buf.getvalue().strip(), trainable_params=trainable, all_params=total,
                  notes=case["notes"] + f"; trainable tensors += N(0, {fam.NOISE_STD}^2) noise (torch.Generator seed "
                  f"{seed + 1}) after get_peft_model (torch.manual_seed({seed}))",
                  generate=dict(mode=spec["greedy"], min_top2_logit_margin=margin),
                  adapter_tensors={k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sorted(sd.items())},
                  adapter_config_keys=sorted(adapter_config), expected={k: list(v.shape) for k, v in exp.items()},
                  versions=fam.versions())
    fam.write_json(os.path.join(folder, "case.json"), record)
    return record


def check_ts_adapters():
    """Adapters saved by peft-ts (test/methods-b.test.ts writes them to $PEFT_TS_ADAPTERS, one folder per case, with
    the logits peft-ts computed) load in Python peft and give the same logits, adapter on and merged."""
    root = os.environ.get("PEFT_TS_ADAPTERS")
    if not root:
        sys.exit("set PEFT_TS_ADAPTERS to the folder the test wrote")
    for name in sorted(os.listdir(root)):
        case = CASES[name]
        spec = MODELS[case["base"]]
        base_folder = os.path.join(ROOT, "models", case["base"])
        model = PeftModel.from_pretrained(fam.load(spec, base_folder), os.path.join(root, name)).eval()
        x = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(base_folder, "inputs.json"))).items()}
        want = load_file(os.path.join(root, name, "logits.safetensors"))["logits"]
        with routed(model, torch.tensor(case["task_ids"])) if case.get("task_ids") else contextlib.nullcontext():
            diff = float((fam.forward(model, x).logits - want).abs().max())
        merged = float((fam.forward(model.merge_and_unload(), x).logits - want).abs().max()) if case.get("merge", True) else 0.0
        print(f"peft-ts adapter {name:18s} loads in Python peft; max |logits diff| {diff:.2e}, merged {merged:.2e}")
        assert diff < 1e-4 and merged < 1e-4, name


def main():
    fam.cli(__doc__, ROOT, MODELS, CASES, make_case, check_ts_adapters)

if __name__ == "__main__":
    main()
