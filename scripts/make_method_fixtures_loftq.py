"""Golden files for LoRA's LoftQ initialiser (init_lora_weights "loftq" with loftq_config), made with Python
transformers 4.44.0 + peft 0.15.2 (../shared/pyref), for test/lora-loftq.test.ts.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_method_fixtures_loftq.py [--only SUBSTR[,SUBSTR...]]

peft 0.15.2's loftq_init refuses to run unless bitsandbytes is importable, yet without bitsandbytes' 4-bit kernels
(and always for 2 and 8 bits) it quantises with its own NFQuantizer (normal-float table, blocks of 64) and never
calls bitsandbytes. pyref has no bitsandbytes (CPU), so this script puts an empty stand-in module in place only
while a layer's loftq_init runs: the path taken is peft's NFQuantizer path, unchanged.

pyref has no scipy either, whose norm.ppf NFQuantizer's table comes from (and LoraConfig checks scipy is there). While
those two run, a stand-in "scipy.stats.norm.ppf" computes the same quantile function (Cephes' ndtri, which scipy
wraps too) with torch.special.ndtri in float64 on the float32 linspace values; scipy rounds its result to float32
(the input's dtype) and peft makes a float32 tensor of it, so the table is the same float32 values.

Writes test/fixtures/methods-loftq/ in the GoldenSet layout of scripts/make_family_fixtures.py (reused as in
make_method_fixtures_lora_init.py): models/<name>/, peft/<case>/ (adapter after noise, logits with the adapter on /
disabled / merged, greedy generation; loading re-runs LoftQ on the original weights, so "disabled" is the
dequantised model), init.safetensors per case (lora_A / lora_B right after get_peft_model and the dequantised base
weights "<module>.base_layer.weight"), and nf_tables.safetensors (NFQuantizer's "normal" lookup tables for 2, 4
and 8 bits, which come from scipy's norm.ppf).
"""

import contextlib
import importlib.machinery
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_family_fixtures as fam  # noqa: E402
import make_method_fixtures_lora_init as lora_init  # noqa: E402
import peft.utils.loftq_utils as loftq_utils  # noqa: E402
from peft.tuners.lora.config import LoraConfig  # noqa: E402
from peft.tuners.lora.layer import LoraLayer  # noqa: E402

fam.ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "methods-loftq")
lora_init.fam.ROOT = fam.ROOT



def stand_in(name, **attrs):
    """An importable module (find_spec sees it) with the given attributes."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    return module


def norm_ppf(q):
    """scipy.stats.norm.ppf for the arrays NFQuantizer passes (float32 tensors)."""
    return torch.special.ndtri(torch.as_tensor(q).to(torch.float64)).float().numpy()


@contextlib.contextmanager
def importable(*modules):
    """The modules importable by name while the block runs."""
    sys.modules.update({m.__name__: m for m in modules})
    try:
        yield
    finally:
        for m in modules:
            del sys.modules[m.__name__]


def while_importable(fn, *modules):
    """fn, run with the modules importable."""
    def wrapped(*args, **kwargs):
        with importable(*modules):
            return fn(*args, **kwargs)
    return wrapped


stats = stand_in("scipy.stats", norm=types.SimpleNamespace(ppf=norm_ppf))
scipy = stand_in("scipy", stats=stats)
LoraConfig.__post_init__ = while_importable(LoraConfig.__post_init__, scipy, stats)
loftq_utils.NFQuantizer.create_normal_map = staticmethod(
    while_importable(loftq_utils.NFQuantizer.create_normal_map, scipy, stats))
loftq_utils.is_bnb_available = lambda: True
loftq_utils.is_bnb_4bit_available = lambda: False
# only the NFQuantizer path runs: the empty module is imported, never used
LoraLayer.loftq_init = while_importable(LoraLayer.loftq_init, stand_in("bitsandbytes"))

fam.MODELS = {
    "llama": dict(config="LlamaConfig", cls="LlamaForCausalLM", kwargs=dict(fam.SMALL, max_position_embeddings=64),
                  seed=5101, seq=8, greedy="generate"),
}

fam.CASES = lora_init._Cases({
    "llama-loftq-4bit": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=4, init_lora_weights="loftq",
                                  loftq_config=dict(loftq_bits=4, loftq_iter=1)),
        notes="default targets (q_proj [32, 32], v_proj [16, 32]); scaling 1"),
    "llama-loftq-2bit-iter3": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights="loftq",
                                  loftq_config=dict(loftq_bits=2, loftq_iter=3),
                                  target_modules=["k_proj", "gate_proj", "down_proj"]),
        notes="3 alternating iterations; scaling 2, which peft's LoftQ ignores (B·A, not scaling·B·A, is the "
              "quantisation error's low-rank part); tall (gate_proj) and wide (down_proj) weights"),
    "llama-loftq-8bit-rank-pattern": dict(
        base="llama", method=dict(task_type="CAUSAL_LM", r=2, lora_alpha=2, init_lora_weights="loftq",
                                  loftq_config=dict(loftq_bits=8, loftq_iter=2),
                                  target_modules=["q_proj", "o_proj"], rank_pattern={"o_proj": 3}),
        notes="8 bits (256 levels); rank_pattern"),
})


def make_tables():
    """NFQuantizer's normal-float lookup tables."""
    tables = {f"bits{b}": loftq_utils.NFQuantizer.create_normal_map(num_bits=b) for b in (2, 4, 8)}
    fam.save_tensors(os.path.join(fam.ROOT, "nf_tables.safetensors"), tables,
                     "make_method_fixtures_loftq.py NFQuantizer.create_normal_map")


def main():
    orig = fam.make_case

    def make_case(name, case):
        record = orig(name, case)
        lora_init.make_init(name, case)
        return record

    fam.make_case = make_case
    fam.main()
    make_tables()


if __name__ == "__main__":
    main()
