"""
The PyTorch + peft side of `npm run bench -- --only memory`: one LoRA training case per process, so that its peak RSS
is its own, on the same model shape, LoRA config and step as bench/models.ts.

    python3 bench/pytorch_memory.py --config CONFIG.json --batch B --seq S --steps N --warmup W
                                    [--bf16-autocast] [--checkpointing] [--threads T]

CONFIG.json holds the transformers config fields the TypeScript bench builds from (bench/models.ts CONFIGS), so both
sides build the same shape. The model is random-initialised in float32 (transformers' from_config); LoRA r=8,
alpha=16, dropout 0 on q_proj/v_proj (c_attn with fan_in_fan_out for GPT-2); AdamW(lr=1e-4) over the LoRA weights;
labels = input ids. --bf16-autocast runs forward and backward under torch.autocast("cpu", torch.bfloat16), the usual
bf16 recipe on CPU (weights stay float32). --checkpointing is transformers' gradient_checkpointing_enable().
Prints one line `RESULT {json}` with tokens/s and peak RSS (VmHWM). Needs torch, transformers and peft
(shared/pyref's env.sh sets them up); never a dependency of peft-ts.
"""
import argparse
import contextlib
import json
import time


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16-autocast", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.config) as f:
        fields = json.load(f)
    config = AutoConfig.for_model(**fields)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    if args.checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    gpt2 = fields["model_type"] == "gpt2"
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.0,
                      target_modules=["c_attn"] if gpt2 else ["q_proj", "v_proj"], fan_in_fan_out=gpt2)
    model = get_peft_model(model, lora)
    if args.checkpointing:
        model.enable_input_require_grads()  # reentrant checkpointing needs an input that requires grad
    build_s = time.perf_counter() - t0
    rss_after_build = status_mib("VmRSS")

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=g)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16_autocast else contextlib.nullcontext
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())

    for _ in range(args.warmup):
        step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = time.perf_counter() - t
    print("RESULT " + json.dumps(dict(
        tokens_per_s=args.batch * args.seq * args.steps / wall, s_per_step=wall / args.steps, build_s=build_s,
        rss_after_build_mib=rss_after_build, peak_rss_mib=status_mib("VmHWM"), loss_first_last=[losses[0], losses[-1]],
        torch=torch.__version__, threads=torch.get_num_threads(),
    )))


if __name__ == "__main__":
    main()
