"""Golden files for X-LoRA, made with Python peft 0.15.2 + transformers 4.44 (../shared/pyref), for
test/xlora.test.ts.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_method_fixtures_xlora.py
    # X-LoRA adapters saved by peft-ts load in Python peft with peft-ts' logits (needs `npx tsc -p .` first):
    PEFT_TS_ADAPTERS=/tmp/ts-adapters-xlora node --test dist/test/xlora.test.js
    PEFT_TS_ADAPTERS=/tmp/ts-adapters-xlora /usr/bin/python3 scripts/make_method_fixtures_xlora.py --check-ts-adapters

peft 0.15.2's XLoraModel hands the scalings to its layers through register_forward_pre_hook(..., with_kwargs=True),
which needs torch >= 2.0; pyref's torch is 1.13. So this script builds peft's real XLoraModel (get_peft_model with an
XLoraConfig: peft loads the LoRA experts, swaps in its XLoraLinearLayer forwards and builds its XLoraClassifier), saves
it with peft's save_pretrained, and replaces only the hook plumbing by a hand-written driver (xlora_forward below,
following peft's published _enable_peft_forward_hooks): a no-grad scaling pass with every layer given the dummy
scalings (scaling_pass_value) and output_hidden_states, peft's classifier on the last hidden state, then the real pass
with every layer given the classifier's scalings. The layers' and the classifier's forwards are peft's own code.

Writes test/fixtures/methods-xlora/: models/llama (tiny LLaMA, use_cache false), experts/<i> (LoRA adapters saved by
peft, seeded noise on their factors), peft/<case>/{adapter/ (peft's save_pretrained: the classifier; the expert copies it also writes, whose keys peft mangles
and never reads, are removed), expected.safetensors (logits, scalings, loss,
4 greedy tokens the way peft's X-LoRA generate makes them: without a cache)},
inputs.json and index.json.
"""

import json
import os
import shutil
import sys
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_family_fixtures as fam  # noqa: E402
from peft import LoraConfig, PeftModel, XLoraConfig, get_peft_model  # noqa: E402
from peft.tuners import lora  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "methods-xlora")
MODEL = dict(config="LlamaConfig", cls="LlamaForCausalLM", seed=4101, seq=6, greedy=None,
             kwargs=dict(vocab_size=48, initializer_range=0.1, **fam.CLM_SPECIAL, hidden_size=16, intermediate_size=24,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         use_cache=False))
# Experts share their targets (peft 0.15.2's X-LoRA layers fail with a KeyError on a layer that lacks an expert).
EXPERTS = [dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"]),
           dict(r=3, lora_alpha=3, target_modules=["q_proj", "v_proj", "down_proj"]),
           dict(r=2, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])]
CASES = {
    "dense": dict(notes="defaults: depth 1, softmax over the experts, scaling pass value 0"),
    "topk": dict(top_k_lora=2, enable_softmax=False, enable_softmax_topk=True, layerwise_scalings=True,
                 notes="layerwise logits, top-2 experts kept, softmax over the kept (nonzero) entries"),
    "deep": dict(xlora_depth=3, xlora_size=12, layerwise_scalings=True, softmax_temperature=0.5,
                 scaling_pass_value=0.3, global_scaling_weight=0.8,
                 notes="3-layer classifier (ReLU, dropout off in eval), temperature 0.5, scaling pass 0.3, weight 0.8"),
    "topk-deep": dict(top_k_lora=1, xlora_depth=2, xlora_size=8, scaling_pass_value=0.0, global_scaling_weight=1.5,
                      notes="softmax then top-1 (no re-normalisation), depth 2"),
}


def make_experts(spec, base_folder):
    paths = []
    for i, e in enumerate(EXPERTS):
        folder = os.path.join(ROOT, "experts", str(i))
        torch.manual_seed(spec["seed"] + 10 + i)
        pm = get_peft_model(fam.load(spec, base_folder), LoraConfig(task_type="CAUSAL_LM", **e))
        fam.add_noise(pm, spec["seed"] + 20 + i)
        pm.save_pretrained(folder)
        cfg_path = os.path.join(folder, "adapter_config.json")
        cfg = json.load(open(cfg_path))
        cfg["base_model_name_or_path"] = "models/llama"
        fam.write_json(cfg_path, cfg)
        paths.append(folder)
    return paths


def remember_layer_forwards(pm):
    for m in pm.base_model.lora_model.model.modules():
        if isinstance(m, lora.Linear):
            m._xlora_forward = m.forward  # peft's XLoraLinearLayer.forward, bound


def set_layer_scalings(layers, scalings):
    for layer in layers:
        layer.forward = partial(layer._xlora_forward, scalings=scalings)


def xlora_forward(pm, x, labels=False, position_ids=None):
    """peft's X-LoRA forward with the hooks written out: scaling pass, classifier, real pass."""
    xm = pm.base_model
    model = xm.lora_model.model
    layers = [m for m in model.modules() if isinstance(m, lora.Linear)]
    clf = xm.internal_xlora_classifier
    with torch.no_grad():
        set_layer_scalings(layers, clf.make_dummy_scalings(input_ids=x["input_ids"]))
        xm.lora_model.disable_adapter_layers()
        try:
            base = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], position_ids=position_ids,
                         output_hidden_states=True, return_dict=True)
        finally:
            xm.lora_model.enable_adapter_layers()
        scalings = clf(result=base, input_ids=x["input_ids"])
        set_layer_scalings(layers, scalings)
        kw = dict(labels=x["input_ids"]) if labels else {}
        out = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], position_ids=position_ids, **kw)
    return out, scalings


def xlora_greedy(pm, x, steps=4):
    """peft's X-LoRA generate (use_cache=False: both passes over the whole sequence each step), greedy, on the
    left-padded gen_* prompts with generate's position ids; returns (ids, smallest top-1/top-2 logit gap)."""
    ids, mask, margin = x["gen_input_ids"], x["gen_attention_mask"], float("inf")
    for _ in range(steps):
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        s = xlora_forward(pm, dict(input_ids=ids, attention_mask=mask), position_ids=pos)[0].logits[:, -1]
        top2 = s.topk(2).values
        margin = min(margin, float((top2[:, 0] - top2[:, 1]).min()))
        ids = torch.cat([ids, s.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones(ids.shape[0], 1, dtype=mask.dtype)], dim=1)
    return ids, margin


def make_case(name, case, spec, base_folder, expert_paths, x):
    folder = os.path.join(ROOT, "peft", name)
    fam.fresh_dir(folder)
    fields = {k: v for k, v in case.items() if k != "notes"}
    torch.manual_seed(spec["seed"] + 100 + len(name))
    cfg = XLoraConfig(task_type="CAUSAL_LM", hidden_size=spec["kwargs"]["hidden_size"],
                      adapters={str(i): p for i, p in enumerate(expert_paths)}, **fields)
    pm = get_peft_model(fam.load(spec, base_folder), cfg).eval()
    remember_layer_forwards(pm)
    adir = os.path.join(folder, "adapter")
    pm.save_pretrained(adir)
    for i in range(len(expert_paths)):  # peft also writes the experts, under mangled keys; they are not read back
        shutil.rmtree(os.path.join(adir, str(i)))
    cfg_path = os.path.join(adir, "adapter_config.json")
    saved = json.load(open(cfg_path))
    saved["base_model_name_or_path"] = "models/llama"
    saved["adapters"] = {str(i): f"experts/{i}" for i in range(len(expert_paths))}
    fam.write_json(cfg_path, saved)
    out, scalings = xlora_forward(pm, x)
    loss = xlora_forward(pm, x, labels=True)[0].loss
    greedy, margin = xlora_greedy(pm, x)
    assert margin >= fam.MIN_MARGIN, f"{name}: greedy top-2 margin {margin} too small to compare"
    fam.save_tensors(os.path.join(folder, "expected.safetensors"),
                     dict(logits=out.logits, scalings=scalings, loss=loss.reshape(1), generate_greedy=greedy),
                     f"make_method_fixtures_xlora.py {name}")
    fam.write_json(os.path.join(folder, "case.json"), dict(config=fields, notes=case["notes"], n_layers=scalings.shape[2],
                                                           generate=dict(max_new_tokens=4, min_top2_logit_margin=margin),
                                                           versions=fam.versions()))


def check_ts_adapters():
    """X-LoRA adapters saved by peft-ts (test/xlora.test.ts writes them to $PEFT_TS_ADAPTERS, one folder per case, with
    the logits peft-ts computed) load in Python peft (from_pretrained with the experts as `adapters`, as peft asks for
    a local folder) and give the same logits."""
    root = os.environ.get("PEFT_TS_ADAPTERS")
    if not root:
        sys.exit("set PEFT_TS_ADAPTERS to the folder the test wrote")
    base_folder = os.path.join(ROOT, "models", "llama")
    x = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(base_folder, "inputs.json"))).items()}
    experts = {str(i): os.path.join(ROOT, "experts", str(i)) for i in range(len(EXPERTS))}
    for name in sorted(os.listdir(root)):
        pm = PeftModel.from_pretrained(fam.load(MODEL, base_folder), os.path.join(root, name), adapters=experts).eval()
        remember_layer_forwards(pm)
        want = load_file(os.path.join(root, name, "logits.safetensors"))["logits"]
        diff = float((xlora_forward(pm, x)[0].logits - want).abs().max())
        print(f"peft-ts X-LoRA adapter {name:10s} loads in Python peft; max |logits diff| {diff:.2e}")
        assert diff < 1e-4, name


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":  # peft writes target_modules in set order: pin it
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    torch.set_num_threads(1)
    if "--check-ts-adapters" in sys.argv[1:]:
        check_ts_adapters()
        return
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    fam.ROOT = ROOT
    fam.make_model("llama", MODEL)
    base_folder = os.path.join(ROOT, "models", "llama")
    x = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(base_folder, "inputs.json"))).items()}
    expert_paths = make_experts(MODEL, base_folder)
    for name, case in CASES.items():
        make_case(name, case, MODEL, base_folder, expert_paths, x)
        print("case", name, flush=True)
    fam.write_json(os.path.join(ROOT, "index.json"), dict(models=dict(llama={"class": MODEL["cls"]}), cases=sorted(CASES),
                                                         experts=len(EXPERTS), versions=fam.versions()))


if __name__ == "__main__":
    main()
