"""Golden files for the seed methods that Python peft 0.15.2 has: multitask prompt tuning (MULTITASK_PROMPT_TUNING).

Usage (the project's Python reference: transformers 4.44, peft 0.15.2, CPU torch):
    source /work/shared/pyref/env.sh; /usr/bin/python3 scripts/make_method_fixtures_seeds.py
    PEFT_TS_ADAPTERS=/tmp/ts-mpt /usr/bin/python3 scripts/make_method_fixtures_seeds.py --check-ts-adapters

Writes test/fixtures/methods-seeds/{index.json, peft/<case>/} in the layout of test/fixtures/reference: each case
holds case.json (config, inputs, expected tensor shapes, saved key set), expected.safetensors and, for the source
case, the adapter folder peft saved. The base model is the reference set's tiny GPT-2
(test/fixtures/reference/models/gpt2), named in index.json instead of copied. Seeded, one torch thread.

Cases:
- gpt2-mpt-source: RANDOM init, 3 tasks, rank 2, 4 virtual tokens; every trainable tensor gets N(0, 1) noise (so the
  task factors matter); logits with the adapter (task ids [0, 2]) and disabled, greedy generation, the saved adapter.
- gpt2-mpt-target-exact / -average: the source → target step: a 1-task adapter started from the source adapter's
  file with EXACT_SOURCE_TASK (task 1) or AVERAGE_SOURCE_TASKS; its logits right after creation, and its tensors.
--check-ts-adapters loads adapters peft-ts saved (test/methods-seeds.test.ts writes them to $PEFT_TS_ADAPTERS with
logits.safetensors and task_ids.json beside them) in peft and compares the logits.
"""

import argparse
import json
import os
import shutil

import torch
import peft
import transformers
from peft import MultitaskPromptTuningConfig, PeftModel, TaskType, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "test", "fixtures", "methods-seeds")
BASE = os.path.join(HERE, "..", "test", "fixtures", "reference", "models", "gpt2")
INPUT_IDS = [[89, 222, 82, 236, 249, 92], [3, 206, 15, 137, 39, 7]]
TASK_IDS = [0, 2]
GEN_IDS = [[97, 60, 233, 176], [11, 5, 140, 66]]
SOURCE = dict(task_type="CAUSAL_LM", num_virtual_tokens=4, num_tasks=3, num_ranks=2, prompt_tuning_init="RANDOM")


def base():
    return GPT2LMHeadModel.from_pretrained(BASE).eval()


def shapes(tensors):
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in tensors.items()}


def write_case(name, case, expected):
    d = os.path.join(ROOT, "peft", name)
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(d, "expected.safetensors"))
    case = dict(case, expected=shapes(expected), versions=dict(transformers=transformers.__version__, peft=peft.__version__, torch=torch.__version__))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1, sort_keys=True)
    return d


def make_source():
    torch.manual_seed(4101)
    model = get_peft_model(base(), MultitaskPromptTuningConfig(**SOURCE))
    g = torch.Generator().manual_seed(4102)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g))
    model.eval()
    ids, tasks = torch.tensor(INPUT_IDS), torch.tensor(TASK_IDS)
    with torch.no_grad():
        on = model(input_ids=ids, task_ids=tasks).logits
        with model.disable_adapter():
            off = model(input_ids=ids).logits
        gen = model.generate(input_ids=torch.tensor(GEN_IDS), task_ids=tasks, max_new_tokens=4, do_sample=False, pad_token_id=0)
    d = os.path.join(ROOT, "peft", "gpt2-mpt-source")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(os.path.join(d, "adapter"))
    saved = load_file(os.path.join(d, "adapter", "adapter_model.safetensors"))
    cfg = json.load(open(os.path.join(d, "adapter", "adapter_config.json")))
    write_case("gpt2-mpt-source", dict(
        base="gpt2", peft_type="MULTITASK_PROMPT_TUNING", config=SOURCE, input_ids=INPUT_IDS, task_ids=TASK_IDS, gen_input_ids=GEN_IDS,
        max_new_tokens=4, adapter_tensors=shapes(saved), adapter_config_keys=sorted(cfg),
        notes="every trainable tensor += N(0, 1) from torch.Generator().manual_seed(4102) after get_peft_model (torch.manual_seed(4101) before)",
    ), dict(logits_adapter=on, logits_disabled=off, generate_ids=gen))
    return os.path.join(d, "adapter", "adapter_model.safetensors")


def make_target(name, init, source_file, **extra):
    config = dict(task_type="CAUSAL_LM", num_virtual_tokens=4, num_tasks=1, num_ranks=2, prompt_tuning_init=init, **extra)
    torch.manual_seed(4103)
    model = get_peft_model(base(), MultitaskPromptTuningConfig(prompt_tuning_init_state_dict_path=source_file, **config)).eval()
    enc = model.prompt_encoder["default"]
    with torch.no_grad():
        on = model(input_ids=torch.tensor(INPUT_IDS), task_ids=torch.tensor([0, 0])).logits
    write_case(name, dict(base="gpt2", peft_type="MULTITASK_PROMPT_TUNING", config=config, source="gpt2-mpt-source", input_ids=INPUT_IDS, task_ids=[0, 0]),
               dict(logits_adapter=on, prompt_embeddings=enc.embedding.weight.detach(), prefix_task_cols=enc.prefix_task_cols.detach(),
                    prefix_task_rows=enc.prefix_task_rows.detach()))


def check_ts_adapters():
    root = os.environ["PEFT_TS_ADAPTERS"]
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        model = PeftModel.from_pretrained(base(), d).eval()
        tasks = torch.tensor(json.load(open(os.path.join(d, "task_ids.json"))))
        want = load_file(os.path.join(d, "logits.safetensors"))["logits"]
        with torch.no_grad():
            got = model(input_ids=torch.tensor(INPUT_IDS), task_ids=tasks).logits
        diff = float((got - want).abs().max())
        print(f"{name}: max |logits diff| {diff:.3g}")
        assert diff < 1e-4, name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-ts-adapters", action="store_true", help="only load the adapters in $PEFT_TS_ADAPTERS in peft")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check_ts_adapters:
        check_ts_adapters()
        return
    source_file = make_source()
    make_target("gpt2-mpt-target-exact", "EXACT_SOURCE_TASK", source_file, prompt_tuning_init_task=1)
    make_target("gpt2-mpt-target-average", "AVERAGE_SOURCE_TASKS", source_file)
    index = dict(versions=dict(transformers=transformers.__version__, peft=peft.__version__, torch=torch.__version__),
                 models=dict(gpt2=dict({"class": "GPT2LMHeadModel"}, at="../reference/models/gpt2")),
                 cases={name: json.load(open(os.path.join(ROOT, "peft", name, "case.json")))["config"] for name in sorted(os.listdir(os.path.join(ROOT, "peft")))})
    with open(os.path.join(ROOT, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
