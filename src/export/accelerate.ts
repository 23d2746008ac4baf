/**
 * The scale-out hand-off of `peft train --engine accelerate`: a folder holding a short Python script that runs the
 * same fine-tuning with transformers' Trainer and peft, the examples as peft-ts tokenised and labelled them (JSONL),
 * an accelerate config and a README.txt; and the launch of that script with `accelerate launch`.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { EnvironmentError } from "../errors.js";
import { writeFileAtomic, writeFolderAtomic } from "../io/atomic.js";
import { toJson } from "../io/json.js";
import type { Example } from "../train/data.js";

/** Everything the generated script needs to repeat a `peft train` run. */
export interface AccelerateHandoff {
  /** Model folder (absolute) or Hub id, as transformers' from_pretrained takes it. */
  model: string;
  /** torch dtype of the frozen weights: "float32", "bfloat16", "float16" or "auto". */
  torchDtype: string;
  /** BitsAndBytesConfig fields (QLoRA), or null for a float model. */
  quantizationConfig: Record<string, unknown> | null;
  /** The id padding uses (peft-ts' collator: the tokenizer's pad token, else 0). */
  padTokenId: number;
  /** adapter_config.json fields as peft-ts writes them (peft_type, task_type and the method's fields). */
  adapterConfig: Record<string, unknown>;
  /** TrainingArguments fields, in transformers' names. */
  trainingArgs: Record<string, unknown>;
  /** Tokenised training examples: input_ids, attention_mask, labels. */
  train: readonly Example[];
  /** Tokenised evaluation examples, when the config has eval data. */
  eval: readonly Example[] | null;
  /** Processes of the accelerate config (one per GPU; the launch command can override it). */
  numProcesses: number;
  /** Writes the tokenizer files into a folder (copied beside the trained adapter). */
  writeTokenizer: (dir: string) => void;
  /** Writes the initial adapter (peft-ts' own initialisation) into a folder, for runs that must start from the same weights. */
  writeInitialAdapter?: (dir: string) => void;
}

/** The Python modules the script imports, each with the pip package that provides it. */
const PYTHON_MODULES = ["torch", "transformers", "peft", "accelerate"] as const;

/** Python source for a JSON value: dicts, lists, strings, numbers, True/False/None. */
export function pythonLiteral(value: unknown, indent = ""): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") {
    if (Number.isNaN(value)) return 'float("nan")';
    if (!Number.isFinite(value)) return value > 0 ? 'float("inf")' : '-float("inf")';
    return String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  const inner = `${indent}    `;
  if (Array.isArray(value)) return `[${value.map((v) => pythonLiteral(v, indent)).join(", ")}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pythonLiteral(v, inner)},`).join("\n")}\n${indent}}`;
}

/** The training script: transformers' Trainer with peft, configured by the constants at its top. */
export function trainScript(h: AccelerateHandoff): string {
  return `#!/usr/bin/env python3
"""Fine-tune with Hugging Face's Trainer and peft, as \`peft train\` (peft-ts) was configured to.

Written by \`peft train CONFIG --engine accelerate\`. Run it with accelerate (see README.txt):
    accelerate launch --config_file accelerate_config.yaml train.py
The data files beside this script hold the examples as peft-ts tokenised them (prompt tokens labelled -100).
"""
import json
import shutil
from pathlib import Path

import torch
import transformers
from peft import PeftConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

# accelerate asks torch.cpu for a device count when several processes train on CPU; torch < 2.1 lacks it.
if not hasattr(torch.cpu, "device_count"):
    torch.cpu.device_count = lambda: 1
    torch.cpu.set_device = lambda device: None

HERE = Path(__file__).resolve().parent
MODEL = ${pythonLiteral(h.model)}
TORCH_DTYPE = ${pythonLiteral(h.torchDtype)}
# BitsAndBytesConfig fields (QLoRA; bitsandbytes needs a CUDA GPU), or None.
QUANTIZATION_CONFIG = ${h.quantizationConfig === null ? "None" : pythonLiteral(h.quantizationConfig)}
PAD_TOKEN_ID = ${h.padTokenId}
# adapter_config.json as peft-ts writes it.
ADAPTER_CONFIG = ${pythonLiteral(h.adapterConfig)}
TRAINING_ARGS = ${pythonLiteral(h.trainingArgs)}
# peft-ts' initial adapter weights, when written (--same-init): training starts from them instead of a fresh draw.
INITIAL_ADAPTER = HERE / "initial_adapter"


def read_jsonl(name):
    path = HERE / name
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def collate(examples):
    """Right-pad a batch as peft-ts does: input_ids with the pad id, attention_mask with 0, labels with -100."""
    length = max(len(e["input_ids"]) for e in examples)

    def pad(key, value):
        return torch.tensor([e[key] + [value] * (length - len(e[key])) for e in examples], dtype=torch.long)

    return {"input_ids": pad("input_ids", PAD_TOKEN_ID), "attention_mask": pad("attention_mask", 0), "labels": pad("labels", -100)}


class Trainer(transformers.Trainer):
    """transformers' Trainer that also keeps each optimizer step's loss unrounded (the logs round to 4 digits)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_losses = {}

    def training_step(self, model, inputs):
        loss = super().training_step(model, inputs)
        step = self.state.global_step + 1
        self.step_losses[step] = self.step_losses.get(step, 0.0) + loss.item()
        return loss


def main():
    args = transformers.TrainingArguments(**TRAINING_ARGS)
    transformers.set_seed(args.seed)
    dtype = TORCH_DTYPE if TORCH_DTYPE == "auto" else getattr(torch, TORCH_DTYPE)
    quantization = None if QUANTIZATION_CONFIG is None else transformers.BitsAndBytesConfig(**QUANTIZATION_CONFIG)
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=dtype, quantization_config=quantization)
    if quantization is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = PAD_TOKEN_ID
    if INITIAL_ADAPTER.exists():
        model = PeftModel.from_pretrained(model, str(INITIAL_ADAPTER), is_trainable=True)
    else:
        model = get_peft_model(model, PeftConfig.from_peft_type(**ADAPTER_CONFIG))
    if args.gradient_checkpointing:
        model.enable_input_require_grads()
    model.print_trainable_parameters()

    trainer = Trainer(
        model=model, args=args, data_collator=collate,
        train_dataset=read_jsonl("train.jsonl"), eval_dataset=read_jsonl("eval.jsonl"),
    )
    trainer.train()
    if trainer.is_fsdp_enabled:
        # One whole adapter file rather than a shard per process.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        trainer.save_state()
        for file in (HERE / "tokenizer").iterdir():
            shutil.copy(file, Path(args.output_dir) / file.name)
        # This process's losses (with several processes, the others' batches are not in them).
        with (Path(args.output_dir) / "step_losses.jsonl").open("w", encoding="utf-8") as f:
            for step, loss in sorted(trainer.step_losses.items()):
                f.write(json.dumps({"step": step, "loss": loss}) + "\\n")


if __name__ == "__main__":
    main()
`;
}

/** accelerate's config file for one machine with `numProcesses` processes (torch.distributed's launcher when more than one). */
export function accelerateConfig(numProcesses: number): string {
  return [
    "# accelerate launch --config_file accelerate_config.yaml train.py   (README.txt shows " +
      "DeepSpeed, FSDP and several machines)",
    "compute_environment: LOCAL_MACHINE",
    `distributed_type: ${numProcesses > 1 ? "MULTI_GPU" : "NO"}`,
    "num_machines: 1",
    "machine_rank: 0",
    `num_processes: ${numProcesses}`,
    "gpu_ids: all",
    "mixed_precision: 'no'",
    "main_training_function: main",
    "rdzv_backend: static",
    "same_network: true",
    "use_cpu: false",
    "",
  ].join("\n");
}

/** README.txt: what the folder holds and how to run it on one machine, several GPUs or several machines. */
export function handoffReadme(h: AccelerateHandoff): string {
  const examples = (h.eval ? "train.jsonl, eval.jsonl" : "train.jsonl").padEnd(25);
  const initial = h.writeInitialAdapter
    ? "\n  initial_adapter/         peft-ts' initial adapter weights (training starts from them)"
    : "";
  return `Made by \`peft train CONFIG --engine accelerate\` (peft-ts): the same fine-tuning on Hugging Face's Trainer and peft.

Files
  train.py                 the training script; MODEL, ADAPTER_CONFIG and TRAINING_ARGS at its top come from the config
  ${examples}the examples as peft-ts tokenised them: input_ids, attention_mask, labels (-100: not learned)
  accelerate_config.yaml   ${h.numProcesses} process(es) on one machine
  tokenizer/               tokenizer files, copied beside the trained adapter${initial}

Needs Python 3 with: pip install torch transformers peft accelerate

Run
  accelerate launch --config_file accelerate_config.yaml train.py
  accelerate launch --config_file accelerate_config.yaml --num_processes 8 train.py        # 8 GPUs
  torchrun --nproc_per_node 8 train.py                                                       # the same without accelerate
Several machines (run on each, with its --machine_rank):
  accelerate launch --config_file accelerate_config.yaml --num_machines 2 --num_processes 16 \\
    --machine_rank 0 --main_process_ip 10.0.0.1 --main_process_port 29500 train.py
DeepSpeed ZeRO or FSDP: answer \`accelerate config\` (or edit distributed_type: DEEPSPEED / FSDP in the yaml) and launch
as above; TRAINING_ARGS may also take "deepspeed": "ds_config.json".

The model path is this machine's (${h.model}); on another machine edit MODEL in train.py.
The adapter lands in TRAINING_ARGS["output_dir"] (relative to the folder you launch from), with the tokenizer files and
step_losses.jsonl; load it back with peft-ts: peft generate --adapter OUTPUT_DIR, peft merge, PeftModel.fromPretrained.
`;
}

/** One JSON object per line. */
function jsonl(examples: readonly Example[]): string {
  return examples.map((e) => `${toJson(e)}\n`).join("");
}

/** Write the hand-off folder `dir` as a whole (atomically): train.py, train.jsonl (+ eval.jsonl), accelerate_config.yaml, README.txt, tokenizer/. */
export function writeAccelerateHandoff(dir: string, h: AccelerateHandoff): void {
  writeFolderAtomic(dir, (tmp) => {
    writeFileAtomic(join(tmp, "train.py"), trainScript(h));
    writeFileAtomic(join(tmp, "train.jsonl"), jsonl(h.train));
    if (h.eval) writeFileAtomic(join(tmp, "eval.jsonl"), jsonl(h.eval));
    writeFileAtomic(join(tmp, "accelerate_config.yaml"), accelerateConfig(h.numProcesses));
    writeFileAtomic(join(tmp, "README.txt"), handoffReadme(h));
    mkdirSync(join(tmp, "tokenizer"));
    h.writeTokenizer(join(tmp, "tokenizer"));
    h.writeInitialAdapter?.(join(tmp, "initial_adapter"));
  });
}

/** Check that `python` runs and imports what the script needs; an EnvironmentError names what is missing and how to install it. */
export function checkPythonEnvironment(python: string): void {
  const probe = `import importlib
for name in ${JSON.stringify(PYTHON_MODULES)}:
    try:
        importlib.import_module(name)
    except Exception:
        print(name)`;
  const r = spawnSync(python, ["-c", probe], { encoding: "utf8" });
  if (r.error) {
    throw new EnvironmentError(
      `cannot run the Python interpreter "${python}" (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`,
      "install Python 3 and then: pip install torch transformers peft accelerate; or pass " +
        "--python PATH (or set PEFT_TS_PYTHON); --dry-run writes the script without Python",
    );
  }
  const missing = r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => (PYTHON_MODULES as readonly string[]).includes(l));
  if (r.status !== 0 || missing.length > 0) {
    throw new EnvironmentError(
      `${python} lacks the Python package(s) ` +
        `${missing.length > 0 ? missing.join(", ") : `(the import check failed: ${r.stderr.trim()})`}`,
      `pip install ${missing.length > 0 ? missing.join(" ") : PYTHON_MODULES.join(" ")} (for ` +
        `that interpreter), or pass --python PATH of one that has them; --dry-run writes the ` +
        `script without Python`,
    );
  }
}

/** How the processes are started: accelerate's launcher, or PyTorch's torchrun (torch.distributed.run). */
export type Launcher = "accelerate" | "torchrun";

/** The command line (after the interpreter) that runs the hand-off's train.py with `numProcesses` processes. */
export function launchArgs(dir: string, numProcesses: number, launcher: Launcher): string[] {
  const script = join(dir, "train.py");
  if (launcher === "torchrun") {
    // --standalone picks a free port. stderr is teed (console and logs/, each line marked with its rank): the default
    // "0" (no redirection) is not parsed by torch < 2 on Python >= 3.11.
    return [
      "-m",
      "torch.distributed.run",
      "--standalone",
      "--nproc_per_node",
      String(numProcesses),
      "--redirects",
      "2",
      "--tee",
      "2",
      "--log_dir",
      join(dir, "logs"),
      script,
    ];
  }
  const args = [
    "-m",
    "accelerate.commands.launch",
    "--config_file",
    join(dir, "accelerate_config.yaml"),
    "--num_processes",
    String(numProcesses),
  ];
  return [...args, ...(numProcesses > 1 ? ["--multi_gpu"] : []), script];
}

/** Run the hand-off's train.py with the launcher and `numProcesses` processes; the exit status. */
export function launchHandoff(dir: string, python: string, numProcesses: number, launcher: Launcher): number {
  const r = spawnSync(python, launchArgs(dir, numProcesses, launcher), { stdio: "inherit" });
  if (r.error)
    throw new EnvironmentError(
      `cannot run ${python}: ${r.error.message}`,
      "pass --python PATH of an interpreter with torch, transformers, peft and accelerate",
    );
  return r.status ?? 1;
}
