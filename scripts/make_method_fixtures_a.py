"""Golden files for issue 16's first methods (torch's CPU generator, FourierFT, VeRA), made with Python
transformers 4.44.0 + peft 0.15.2 + torch 1.13 (../shared/pyref), for test/torch-generator.test.ts and
test/methods-a-golden.test.ts.

    source ../shared/pyref/env.sh
    /usr/bin/python3 scripts/make_method_fixtures_a.py [--only SUBSTR[,SUBSTR...]]
    # adapters saved by peft-ts load in Python peft with peft-ts' logits (needs `npx tsc -p .` first):
    PEFT_TS_ADAPTERS=/tmp/ts-adapters node --test dist/test/methods-a-golden.test.js
    PEFT_TS_ADAPTERS=/tmp/ts-adapters /usr/bin/python3 scripts/make_method_fixtures_a.py --check-ts-adapters

Writes test/fixtures/methods-a/: torch-generator.json (draw sequences of torch.Generator for several seeds and
sizes) and a GoldenSet (index.json, models/<name>/, peft/<case>/) laid out as test/fixtures/families, reusing
make_family_fixtures.py's model building, inputs and golden recording. The adapters' trainable tensors get seeded
noise after get_peft_model so that nothing is zero; FourierFT's frequency positions and VeRA's projections (with
save_projection=False) are not in the saved files: peft-ts must redraw them with torch's generator.

BOFT: peft 0.15.2 builds its butterfly factors' block-diagonal matrices with a CUDA extension (fbd_cuda); where it
cannot be built (this CPU-only reference) peft silently sets boft_n_butterfly_factor to 1. To record what peft does
where the extension works, this script supplies the extension's two functions on the CPU (_CpuBlockDiag: blocks
[N, D, H, H] -> block-diagonal [N, D*H, D*H] and its gradient back to the blocks), following its published code.
"""

import argparse
import os
import sys

import torch

import make_family_fixtures as fam
import peft.tuners.boft.layer as boft_layer
from make_family_fixtures import versions, write_json
from peft import BOFTConfig, FourierFTConfig, OFTConfig, VeraConfig


class _CpuBlockDiag:
    """fbd_cuda's forward and backward on the CPU (see the module docstring)."""

    @staticmethod
    def forward(x):
        return [torch.stack([torch.block_diag(*torch.unbind(xi)) for xi in x])]

    @staticmethod
    def backward(grad, x):
        h = x.shape[-1]
        return [torch.stack([torch.stack([g[d * h:(d + 1) * h, d * h:(d + 1) * h] for d in range(x.shape[1])])
                             for g in grad])]


boft_layer._FBD_CUDA = _CpuBlockDiag  # peft's get_fbd_cuda() returns it instead of building the CUDA extension

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "methods-a")
fam.ROOT = ROOT  # make_family_fixtures writes models under our folder

MODELS = {
    "llama-tiny": dict(
        config="LlamaConfig", cls="LlamaForCausalLM",
        kwargs=dict(fam.SMALL, max_position_embeddings=64, intermediate_size=48), seed=4001, seq=8, greedy="generate",
        notes="tiny LLaMA: q/k/v/o 32x32 (k/v 32x16), MLP 32x48"),
}

CONFIGS = {"FOURIERFT": FourierFTConfig, "VERA": VeraConfig, "OFT": OFTConfig, "BOFT": BOFTConfig}

CASES = {
    "llama-fourierft": dict(base="llama-tiny", peft_type="FOURIERFT",
                            method=dict(task_type="CAUSAL_LM", n_frequency=40, scaling=30.0, random_loc_seed=1234,
                                        target_modules=["q_proj", "v_proj", "down_proj"]),
                            notes="the frequency positions are redrawn on load with torch.randperm(out*in) seeded by "
                                  "random_loc_seed"),
    "llama-fourierft-pattern": dict(base="llama-tiny", peft_type="FOURIERFT",
                                    method=dict(task_type="CAUSAL_LM", n_frequency=20, scaling=50.0,
                                                target_modules=["q_proj", "gate_proj"],
                                                n_frequency_pattern={"gate_proj": 70}),
                                    notes="default random_loc_seed 777; n_frequency_pattern for gate_proj"),
    "llama-vera": dict(base="llama-tiny", peft_type="VERA",
                       method=dict(task_type="CAUSAL_LM", r=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                   projection_prng_key=11),
                       notes="vera_A/vera_B saved (save_projection default); shapes from the largest targeted layer"),
    "llama-vera-noproj": dict(base="llama-tiny", peft_type="VERA",
                              method=dict(task_type="CAUSAL_LM", r=4, target_modules=["k_proj", "o_proj"],
                                          save_projection=False, d_initial=0.5, projection_prng_key=5),
                              notes="save_projection=False: vera_A/vera_B are redrawn on load from projection_prng_key "
                                    "with torch's generator (kaiming-uniform)"),
    "llama-oft": dict(base="llama-tiny", peft_type="OFT",
                      method=dict(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj", "down_proj"]),
                      notes="4 blocks per layer (8x8, 12x12 for down_proj); Cayley rotation of the input space"),
    "llama-oft-coft-share": dict(base="llama-tiny", peft_type="OFT",
                                 method=dict(task_type="CAUSAL_LM", r=0, oft_block_size=8, coft=True, eps=1e-3,
                                             block_share=True, target_modules=["k_proj", "o_proj", "up_proj"]),
                                 notes="oft_block_size 8, one shared block, COFT projection (radius eps·ceil(out/r)^2/"
                                       "sqrt(1)) applied in place at every forward"),
    "llama-boft": dict(base="llama-tiny", peft_type="BOFT",
                       method=dict(task_type="CAUSAL_LM", boft_block_size=4, boft_n_butterfly_factor=2,
                                   target_modules=["q_proj", "v_proj", "down_proj"]),
                       notes="block size 4, 2 butterfly factors"),
    "llama-boft-blocknum": dict(base="llama-tiny", peft_type="BOFT",
                                method=dict(task_type="CAUSAL_LM", boft_block_size=0, boft_block_num=4,
                                            boft_n_butterfly_factor=1, bias="boft_only",
                                            target_modules=["q_proj", "o_proj"]),
                                notes="boft_block_num 4 (block size 8), one butterfly factor (block-diagonal), "
                                      "bias boft_only"),
}


# ------------------------------------------------------------------------------------------ torch's generator
def generator_goldens():
    """Draw sequences of torch.Generator on the CPU for several seeds and sizes."""
    out = dict(versions=versions(), randperm=[], rand=[], randn=[], bernoulli=[], uniform=[], random=[], chained=[])
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    for seed in (0, 1, 777, 2**32 + 5, 123456789):
        out["random"].append(dict(seed=seed, note="randint(0, 2**31): random() % 2**31", values=[int(v) for v in
                                                     torch.randint(0, 2**31, (20,), generator=g(seed)).tolist()]))
    for seed, n in [(0, 1), (0, 2), (777, 10), (1234, 1024), (777, 3072), (42, 100000)]:
        perm = torch.randperm(n, generator=g(seed))
        out["randperm"].append(dict(seed=seed, n=n, head=perm[:64].tolist(), sum_sq_pos=int((perm * torch.arange(n)).sum())))
    for seed, n in [(0, 5), (3, 100), (11, 1000)]:
        out["rand"].append(dict(seed=seed, n=n, values=torch.rand(n, generator=g(seed)).tolist()))
    for seed, n in [(0, 1), (0, 7), (1, 15), (2, 16), (3, 17), (4, 40), (5, 1000)]:
        out["randn"].append(dict(seed=seed, n=n, values=torch.randn(n, generator=g(seed)).tolist()))
    for seed, shape, bound in [(11, [8, 32], 0.3), (5, [48, 4], 1.7)]:
        t = torch.empty(shape).uniform_(-bound, bound, generator=g(seed))
        out["uniform"].append(dict(seed=seed, shape=shape, bound=bound, values=t.flatten().tolist()))
    for seed, p in [(0, [0.5] * 40), (9, [i / 63 for i in range(64)]), (21, [0.9] * 300)]:
        probs = torch.tensor(p, dtype=torch.float32)
        out["bernoulli"].append(dict(seed=seed, p=p, values=torch.bernoulli(probs, generator=g(seed)).tolist()))
    # One generator through a sequence of calls: small normals leave a cached value that the next small normal uses.
    gen = g(99)
    seq = [("randn", 3), ("randn", 5), ("rand", 4), ("randperm", 12), ("randn", 20), ("randn", 1)]
    values = []
    for op, n in seq:
        values.append(getattr(torch, op)(n, generator=gen).tolist())
    out["chained"].append(dict(seed=99, calls=[[op, n] for op, n in seq], values=values))
    write_json(os.path.join(ROOT, "torch-generator.json"), out)


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":  # peft writes target_modules in set order: pin it
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated substrings of model/case names ('generator' too)")
    ap.add_argument("--check-ts-adapters", action="store_true", help="only load the adapters in $PEFT_TS_ADAPTERS")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check_ts_adapters:
        fam.check_ts_adapters(MODELS, CASES)
        return
    os.makedirs(ROOT, exist_ok=True)
    sel = [s for s in args.only.split(",") if s]
    if not sel or any(s in "generator" for s in sel):
        generator_goldens()
    fam.make_goldens(sel, MODELS, CASES, lambda name, case: fam.make_case(name, case, MODELS, CONFIGS[case["peft_type"]]))


if __name__ == "__main__":
    main()
