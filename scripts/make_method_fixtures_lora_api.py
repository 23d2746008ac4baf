"""Golden files for LoRA's API parity (test/lora-api.test.ts), made with peft 0.15.2 + transformers 4.44 (../shared/pyref):
the deterministic add_weighted_adapter combinations, several active adapters, get_model_status / get_layer_status,
get_peft_model_state_dict / set_peft_model_state_dict key sets and hotswap_adapter.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_method_fixtures_lora_api.py

Base model: the tiny GPT-2 of test/fixtures/reference/models/gpt2 (Conv1D layers with fan_in_fan_out, and wte).
Writes test/fixtures/methods-lora-api/:
- adapters/{first,second,third,fourth}/: adapter folders saved by peft (first: r 4, alpha 8, c_attn + wte; second: r 4,
  alpha 4, c_attn + c_proj; third: r 4, alpha 2, c_attn; fourth: r 2, alpha 8, c_attn only, for hot-swapping into first), every LoRA tensor
  drawn N(0, 0.1^2) from a seeded generator;
- inputs.json: the token ids;
- expected.safetensors: logits (`<case>.logits`) of each weighted combination and of the multi-adapter / hot-swap
  cases, the combined A/B of transformer.h.0.attn.c_attn and transformer.wte (`<case>.<layer>.A|B`) for the factorwise
  types, and ΔW of transformer.h.0.attn.c_proj (`<case>.c_proj.delta`, as get_delta_weight returns it) for the _svd types;
- cases.json: each case's arguments, the status objects (dataclasses.asdict) and the state-dict key sets.
torch 1.13 has no torch.utils.swap_tensors (peft calls it first when hot-swapping): a stand-in raising RuntimeError
sends peft down its own fallback, which copies equal shapes and zero-pads a smaller rank — the same outputs.
DARE masks come from torch.bernoulli on torch's global generator: the `*_seeded` cases call torch.manual_seed(seed) just
before add_weighted_adapter (cases.json keeps the seed) and record torch.rand(8) just after (`<case>.next_rand`), where
the generator stands once peft has drawn the new adapter's initial factors and every mask. Those draws depend on
init_lora_weights, which the new adapter copies from the first one: `init_lora_weights` in a case overrides it there.
"""

import dataclasses
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, PeftModel, get_peft_model, inject_adapter_in_model
from peft.peft_model import get_layer_status, get_model_status
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from peft.utils.hotswap import hotswap_adapter

if not hasattr(torch.utils, "swap_tensors"):
    def _no_swap(*_):
        raise RuntimeError("torch.utils.swap_tensors needs torch >= 2.3")
    torch.utils.swap_tensors = _no_swap

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "..", "test", "fixtures", "reference", "models", "gpt2")
ROOT = os.path.join(HERE, "..", "test", "fixtures", "methods-lora-api")
IDS = [[5, 17, 99, 3, 42, 7]]

ADAPTERS = {
    "first": dict(r=4, lora_alpha=8, target_modules=["c_attn", "wte"]),
    "second": dict(r=4, lora_alpha=4, target_modules=["c_attn", "c_proj"]),
    "third": dict(r=4, lora_alpha=2, target_modules=["c_attn"]),
    "fourth": dict(r=2, lora_alpha=8, target_modules=["c_attn"]),
}

# name: add_weighted_adapter arguments, and for DARE below density 1 the seed of torch's global generator (and the
# first adapter's init_lora_weights for the call, when not that of its saved config).
WEIGHTED = {
    "ties_total": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="ties", density=0.5),
    "ties_frequency": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="ties", density=0.3,
                           majority_sign_method="frequency"),
    "magnitude_prune": dict(adapters=["first", "second"], weights=[0.7, 0.5], combination_type="magnitude_prune", density=0.4),
    "dare_linear_dense": dict(adapters=["first", "second"], weights=[0.7, 0.5], combination_type="dare_linear", density=1.0),
    "dare_ties_dense": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="dare_ties", density=1.0),
    "ties_svd": dict(adapters=["first", "second", "third"], weights=[1.0, -0.6, 0.8], combination_type="ties_svd", density=0.5),
    "ties_svd_frequency": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="ties_svd",
                               density=0.5, majority_sign_method="frequency", svd_rank=6),
    "magnitude_prune_svd": dict(adapters=["first", "second"], weights=[0.7, -0.5], combination_type="magnitude_prune_svd",
                                density=0.4),
    "dare_linear_svd_dense": dict(adapters=["first", "second"], weights=[0.7, 0.5], combination_type="dare_linear_svd", density=1.0),
    "dare_ties_svd_dense": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="dare_ties_svd",
                                density=1.0),
    "dare_linear_seeded": dict(adapters=["first", "second"], weights=[0.7, 0.5], combination_type="dare_linear", density=0.5, seed=11),
    "dare_ties_seeded": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="dare_ties",
                             density=0.6, seed=12, init_lora_weights=True),
    "dare_ties_svd_seeded": dict(adapters=["first", "second", "third"], weights=[1.0, 0.6, 0.8], combination_type="dare_ties_svd",
                                 density=0.5, majority_sign_method="frequency", seed=13, init_lora_weights="gaussian"),
}
FACTOR_LAYERS = {"c_attn": "transformer.h.0.attn.c_attn", "wte": "transformer.wte"}


def base_model():
    return AutoModelForCausalLM.from_pretrained(BASE).eval()


def make_adapters():
    torch.manual_seed(0)
    for i, (name, kwargs) in enumerate(ADAPTERS.items()):
        model = get_peft_model(base_model(), LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **kwargs))
        gen = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        out = os.path.join(ROOT, "adapters", name)
        model.save_pretrained(out)
        os.remove(os.path.join(out, "README.md"))
        # The folder is vendored in the repository: no machine-specific path in it.
        cfg_path = os.path.join(out, "adapter_config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["base_model_name_or_path"] = "gpt2-tiny"
        cfg["target_modules"] = sorted(cfg["target_modules"])  # a Python set: its order changes between runs
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)


def load(names, trainable=()):
    """A PeftModel with adapters `names` loaded in order (the first as the PeftModel's own)."""
    first, *rest = names
    model = PeftModel.from_pretrained(base_model(), os.path.join(ROOT, "adapters", first), adapter_name=first,
                                      is_trainable=first in trainable)
    for n in rest:
        model.load_adapter(os.path.join(ROOT, "adapters", n), adapter_name=n, is_trainable=n in trainable)
    return model


def logits(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS)).logits.detach().clone()


def status_json(model):
    return {
        "model": dataclasses.asdict(get_model_status(model)),
        "layers": [dataclasses.asdict(s) for s in get_layer_status(model)],
    }


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    make_adapters()
    expected, cases = {}, {"weighted": {}, "status": {}, "state_dict": {}, "hotswap": {}}

    for name, kwargs in WEIGHTED.items():
        model = load(["first", "second", "third"])
        seed = kwargs.get("seed")
        if "init_lora_weights" in kwargs:
            model.peft_config[kwargs["adapters"][0]].init_lora_weights = kwargs["init_lora_weights"]
        if seed is not None:
            torch.manual_seed(seed)
        model.add_weighted_adapter(adapter_name="new", **{k: v for k, v in kwargs.items() if k not in ("seed", "init_lora_weights")})
        if seed is not None:
            expected[f"{name}.next_rand"] = torch.rand(8)
        model.set_adapter("new")
        expected[f"{name}.logits"] = logits(model)
        lora = model.base_model.model
        if kwargs["combination_type"].endswith("svd"):
            layer = lora.get_submodule("transformer.h.0.attn.c_proj")
            expected[f"{name}.c_proj.delta"] = layer.get_delta_weight("new").detach().clone()
        else:
            for short, path in FACTOR_LAYERS.items():
                layer = lora.get_submodule(path)
                if "new" in layer.lora_A:
                    a, b = layer.lora_A["new"].weight, layer.lora_B["new"].weight
                else:
                    a, b = layer.lora_embedding_A["new"], layer.lora_embedding_B["new"]
                expected[f"{name}.{short}.A"] = a.detach().clone()
                expected[f"{name}.{short}.B"] = b.detach().clone()
        cases["weighted"][name] = dict(kwargs, new_rank=model.peft_config["new"].r)

    # Several active adapters: their deltas add up.
    model = load(["first", "second", "third"])
    for active in (["first", "second"], ["first", "second", "third"]):
        model.base_model.set_adapter(active)
        expected["active_" + "_".join(active) + ".logits"] = logits(model)

    # Status objects: first and second trainable, third loaded for inference, then first and second active, then merged, then disabled.
    model = load(["first", "second", "third"], trainable=("first", "second"))
    cases["status"]["loaded"] = status_json(model)
    model.base_model.set_adapter(["first", "second"])
    cases["status"]["active_first_second"] = status_json(model)
    model.merge_adapter()
    cases["status"]["merged_first_second"] = status_json(model)
    model.unmerge_adapter()
    with model.disable_adapter():
        cases["status"]["disabled"] = status_json(model)

    # How each method's layer names itself in the status (on lm_head, a plain Linear every method supports).
    cases["module_types"] = {}
    for method, config in (
        ("LORA", LoraConfig(target_modules=["lm_head", "wte"])),
        ("IA3", IA3Config(target_modules=["lm_head"], feedforward_modules=[])),
        ("LOHA", LoHaConfig(target_modules=["lm_head"])),
        ("LOKR", LoKrConfig(target_modules=["lm_head"])),
        ("ADALORA", AdaLoraConfig(target_modules=["lm_head"], total_step=10)),
    ):
        model = get_peft_model(base_model(), config)
        cases["module_types"][method] = {s.name: s.module_type for s in get_layer_status(model)}

    # State-dict keys: what get_peft_model_state_dict returns per adapter, and what loading second's file as "first" reports.
    model = load(["first", "second", "third"])
    for n in ("first", "second", "third"):
        cases["state_dict"][n] = sorted(get_peft_model_state_dict(model, adapter_name=n).keys())
    result = set_peft_model_state_dict(model, load_file(os.path.join(ROOT, "adapters", "second", "adapter_model.safetensors")),
                                       adapter_name="first")
    cases["state_dict"]["set_second_as_first"] = {
        "unexpected_keys": sorted(result.unexpected_keys),
        "missing_lora_keys": sorted(k for k in result.missing_keys if "lora_" in k and (k.endswith(".first") or ".first." in k)),
    }

    # inject_adapter_in_model: the adapter layers in the bare model, state-dict keys without base_model.model.
    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=["c_attn"], modules_to_save=["ln_f"]), base_model(), "mine")
    cases["state_dict"]["injected_mine"] = sorted(get_peft_model_state_dict(model, adapter_name="mine").keys())

    # Hot swap: fourth (rank 2, c_attn only) into first (rank 4, c_attn + wte), same alpha_pattern/dropout/rslora/dora.
    model = load(["first"])
    hotswap_adapter(model, os.path.join(ROOT, "adapters", "fourth"), adapter_name="first", torch_device="cpu")
    expected["hotswap_fourth_into_first.logits"] = logits(model)
    layer = model.base_model.model.get_submodule("transformer.h.0.attn.c_attn")
    cases["hotswap"]["fourth_into_first"] = {"scaling": layer.scaling["first"], "lora_A_shape": list(layer.lora_A["first"].weight.shape)}
    for bad in ("second", "third"):
        model = load(["first"])
        try:
            hotswap_adapter(model, os.path.join(ROOT, "adapters", bad), adapter_name="first", torch_device="cpu")
            cases["hotswap"][f"{bad}_into_first"] = "ok"
        except Exception as err:  # the error peft raises, for the test to compare kinds
            cases["hotswap"][f"{bad}_into_first"] = f"{type(err).__name__}: {err}"

    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(ROOT, "expected.safetensors"))
    with open(os.path.join(ROOT, "inputs.json"), "w") as f:
        json.dump({"input_ids": IDS}, f)
    with open(os.path.join(ROOT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
