/**
 * Config fields are checked by type and range (issue 11 item 6), unknown fields are errors with a "did you mean"
 * (item 7), and accepted-but-unimplemented values are refused. Defaults are compared with Python's (peft 0.15.2,
 * transformers 4.44) through test/fixtures/config-fields/python-defaults.json (scripts/make_config_fields_fixtures.py).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../src/errors.js";
import {
  AdaLoraConfig,
  AdaptionPromptConfig,
  BOFTConfig,
  BoneConfig,
  FourierFTConfig,
  HRAConfig,
  IA3Config,
  LNTuningConfig,
  LoHaConfig,
  LoKrConfig,
  LoraConfig,
  OFTConfig,
  PolyConfig,
  PrefixTuningConfig,
  PromptEncoderConfig,
  PromptTuningConfig,
  VeraConfig,
  XLoraConfig,
  configFromJson,
  getPeftModel,
  type PeftConfig,
} from "../src/peft/index.js";
import { LORA_FIELDS } from "../src/peft/tuners/lora/config.js";
import { ADALORA_FIELDS } from "../src/peft/tuners/adalora/config.js";
import { IA3_FIELDS } from "../src/peft/tuners/ia3/config.js";
import { LOHA_FIELDS } from "../src/peft/tuners/loha/config.js";
import { LOKR_FIELDS } from "../src/peft/tuners/lokr/config.js";
import { PROMPT_TUNING_FIELDS } from "../src/peft/tuners/prompt_tuning/config.js";
import { PROMPT_ENCODER_FIELDS } from "../src/peft/tuners/p_tuning/config.js";
import { PREFIX_TUNING_FIELDS } from "../src/peft/tuners/prefix_tuning/config.js";
import { ADAPTION_PROMPT_FIELDS } from "../src/peft/tuners/adaption_prompt/config.js";
import { HRA_FIELDS } from "../src/peft/tuners/hra/config.js";
import { BONE_FIELDS } from "../src/peft/tuners/bone/config.js";
import { LN_TUNING_FIELDS } from "../src/peft/tuners/ln_tuning/config.js";
import { POLY_FIELDS } from "../src/peft/tuners/poly/config.js";
import { COMMON_FIELDS } from "../src/peft/config.js";
import { FOURIERFT_FIELDS } from "../src/peft/tuners/fourierft/config.js";
import { VERA_FIELDS } from "../src/peft/tuners/vera/config.js";
import { OFT_FIELDS } from "../src/peft/tuners/oft/config.js";
import { BOFT_FIELDS } from "../src/peft/tuners/boft/config.js";
import { XLORA_FIELDS } from "../src/peft/tuners/xlora/config.js";
import type { FieldTable } from "../src/io/config-fields.js";
import { TrainingArguments } from "../src/train/index.js";
import { llama } from "./tiny-models.js";
import { cliWorkspace } from "./cli-workspace.js";

const PYTHON = JSON.parse(
  readFileSync(new URL("../../test/fixtures/config-fields/python-defaults.json", import.meta.url), "utf8"),
) as {
  configs: Record<string, Record<string, unknown>>;
  training_arguments: Record<string, unknown>;
};

/** Run fn with process warnings collected instead of printed. */
function warningsOf(fn: () => void): string[] {
  const seen: string[] = [];
  const original = process.emitWarning;
  process.emitWarning = ((w: string | Error) =>
    void seen.push(String(w instanceof Error ? w.message : w))) as typeof process.emitWarning;
  try {
    fn();
  } finally {
    process.emitWarning = original;
  }
  return seen;
}

/** Assert that fn throws a ConfigError whose message matches every pattern. */
function throwsConfigError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

type Builder = (fields: Record<string, unknown>) => PeftConfig;
const METHODS: [string, Builder, FieldTable][] = [
  ["LORA", (f) => LoraConfig(f), LORA_FIELDS],
  ["ADALORA", (f) => AdaLoraConfig({ total_step: 10, ...f }), ADALORA_FIELDS],
  ["IA3", (f) => IA3Config(f), IA3_FIELDS],
  ["LOHA", (f) => LoHaConfig(f), LOHA_FIELDS],
  ["LOKR", (f) => LoKrConfig(f), LOKR_FIELDS],
  ["PROMPT_TUNING", (f) => PromptTuningConfig(f), PROMPT_TUNING_FIELDS],
  ["P_TUNING", (f) => PromptEncoderConfig(f), PROMPT_ENCODER_FIELDS],
  ["PREFIX_TUNING", (f) => PrefixTuningConfig(f), PREFIX_TUNING_FIELDS],
  ["ADAPTION_PROMPT", (f) => AdaptionPromptConfig(f), ADAPTION_PROMPT_FIELDS],
  ["HRA", (f) => HRAConfig(f), HRA_FIELDS],
  ["BONE", (f) => BoneConfig(f), BONE_FIELDS],
  ["LN_TUNING", (f) => LNTuningConfig(f), LN_TUNING_FIELDS],
  ["POLY", (f) => PolyConfig(f), POLY_FIELDS],
  ["FOURIERFT", (f) => FourierFTConfig(f), FOURIERFT_FIELDS],
  ["VERA", (f) => VeraConfig(f), VERA_FIELDS],
  ["OFT", (f) => OFTConfig(f), OFT_FIELDS],
  ["BOFT", (f) => BOFTConfig(f), BOFT_FIELDS],
  ["XLORA", (f) => XLoraConfig(f), XLORA_FIELDS],
];

describe("config field types and ranges (item 6)", () => {
  it("the issue's wrong types give a ConfigError naming the field, the expected type and the value", () => {
    throwsConfigError(
      () => LoraConfig({ use_rslora: "false" as never }),
      /`use_rslora` must be a boolean \(true or false\), got "false" \(a string\)/,
    );
    throwsConfigError(
      () => LoraConfig({ lora_dropout: "0.1" as never }),
      /`lora_dropout` must be a number in \[0, 1\), got "0\.1" \(a string\)/,
    );
    throwsConfigError(
      () => LoraConfig({ lora_dropout: null as never }),
      /`lora_dropout` must be a number in \[0, 1\), got null/,
    );
    throwsConfigError(
      () => LoraConfig({ target_modules: 5 as never }),
      /`target_modules` must be a string or a list of items each a string or null, got 5/,
    );
    throwsConfigError(
      () => LoraConfig({ modules_to_save: "lm_head" as never }),
      /`modules_to_save` must be a list of items each a string or null, got "lm_head" \(a string\)/,
    );
  });

  it("ranges: numbers outside their range are refused with the range in words", () => {
    throwsConfigError(() => LoraConfig({ r: 0 }), /`r` must be an integer ≥ 1, got 0/);
    throwsConfigError(() => LoraConfig({ r: 2.5 }), /`r` must be an integer ≥ 1, got 2\.5/);
    throwsConfigError(() => LoraConfig({ lora_dropout: 1 }), /`lora_dropout` must be a number in \[0, 1\), got 1/);
    throwsConfigError(
      () => LoraConfig({ lora_alpha: Number.NaN }),
      /`lora_alpha` must be a number, got NaN \(not a finite number\)/,
    );
    throwsConfigError(() => AdaLoraConfig({ total_step: 10, beta1: 2 }), /`beta1` must be a number in \[0, 1\], got 2/);
    throwsConfigError(() => LoHaConfig({ rank_dropout: 1.5 }), /`rank_dropout` must be a number in \[0, 1\], got 1\.5/);
    throwsConfigError(
      () => LoKrConfig({ decompose_factor: 0 }),
      /`decompose_factor` must be -1 or an integer ≥ 1, got 0/,
    );
    throwsConfigError(
      () => PromptEncoderConfig({ encoder_dropout: 1 }),
      /`encoder_dropout` must be a number in \[0, 1\)/,
    );
    throwsConfigError(
      () => PromptTuningConfig({ num_virtual_tokens: "8" as never }),
      /`num_virtual_tokens` must be an integer ≥ 1 or null, got "8" \(a string\)/,
    );
    throwsConfigError(
      () => PrefixTuningConfig({ num_virtual_tokens: 4, prefix_projection: 1 as never }),
      /`prefix_projection` must be a boolean/,
    );
    throwsConfigError(
      () => AdaptionPromptConfig({ adapter_len: -1 }),
      /`adapter_len` must be an integer ≥ 1 or null, got -1/,
    );
    throwsConfigError(() => IA3Config({ fan_in_fan_out: "true" as never }), /`fan_in_fan_out` must be a boolean/);
    throwsConfigError(
      () => LoraConfig({ task_type: "CAUSAL" as never }),
      /`task_type` must be one of "SEQ_CLS", .*"CAUSAL_LM".* or null, got "CAUSAL"/,
    );
  });

  it("every field of every method refuses a value of no valid type, naming the field", () => {
    for (const [type, build, table] of METHODS) {
      for (const name of [...Object.keys(table), ...Object.keys(COMMON_FIELDS)]) {
        throwsConfigError(
          () => build({ [name]: [{}] }),
          new RegExp(`^${type} config: \`${name}\` must be .*, got \\[\\{\\}\\] \\(a list\\)$`),
        );
      }
    }
  });

  it("every field and default is Python's (peft 0.15.2), for every method", () => {
    for (const [type, build] of METHODS) {
      const python = PYTHON.configs[type]!;
      const ours: Record<string, unknown> = { ...build({}), peft_type: undefined };
      if (type === "ADALORA") ours["total_step"] = null; // required: the builder above was given 10
      assert.deepEqual(ours, { ...python, peft_type: undefined }, `${type} defaults`);
    }
  });

  it("loaded adapter_config.json files are checked the same way", () => {
    throwsConfigError(
      () => configFromJson({ peft_type: "LORA", use_rslora: "false" }),
      /LORA config: `use_rslora` must be a boolean/,
    );
    throwsConfigError(
      () => configFromJson({ peft_type: "IA3", target_modules: 5 }),
      /IA3 config: `target_modules` must be/,
    );
    throwsConfigError(
      () => configFromJson({ peft_type: "LORA", peft_type_: 1, lora_dropout: "0.1" }),
      /`lora_dropout`/,
    );
  });

  it("a string 'false' no longer turns rsLoRA on: the model is never built", () => {
    throwsConfigError(
      () => getPeftModel(llama(), { ...LoraConfig({ target_modules: ["q_proj"] }), use_rslora: "false" } as never),
      /`use_rslora` must be a boolean/,
    );
  });

  it("TrainingArguments: every field typed, and its defaults are transformers'", () => {
    throwsConfigError(
      () => TrainingArguments({ output_dir: "o", learning_rate: "1e-3" as never }),
      /TrainingArguments: `learning_rate` must be a number ≥ 0, got "1e-3" \(a string\)/,
    );
    throwsConfigError(
      () => TrainingArguments({ output_dir: "o", per_device_train_batch_size: 2.5 }),
      /`per_device_train_batch_size` must be an integer ≥ 1, got 2\.5/,
    );
    throwsConfigError(() => TrainingArguments({ output_dir: "o", seed: -1 }), /`seed` must be an integer ≥ 0, got -1/);
    throwsConfigError(
      () => TrainingArguments({ output_dir: "o", logging_steps: 0.5 }),
      /`logging_steps` must be an integer ≥ 1, got 0\.5/,
    );
    throwsConfigError(
      () => TrainingArguments({ output_dir: "o", lr_scheduler_type: "cosine_annealing" as never }),
      /`lr_scheduler_type` must be one of "linear"/,
    );
    throwsConfigError(() => TrainingArguments({ output_dir: "" }), /`output_dir` must be a non-empty string, got ""/);
    const ours = TrainingArguments({});
    for (const [name, value] of Object.entries(ours)) {
      if (name === "output_dir") continue; // required in 4.44; "trainer_output" in current transformers
      assert.deepEqual(value, PYTHON.training_arguments[name], `TrainingArguments.${name}`);
    }
  });
});

describe("unknown and unimplemented fields (item 7)", () => {
  it("a field no peft version has is an error from code, with a did-you-mean", () => {
    throwsConfigError(
      () => LoraConfig({ lora_alpah: 16 } as never),
      /LORA config: unknown field `lora_alpah` \(did you mean `lora_alpha`\?\); no version of peft has it/,
    );
    throwsConfigError(() => IA3Config({ feedforward_module: ["x"] } as never), /did you mean `feedforward_modules`\?/);
    throwsConfigError(
      () => PromptTuningConfig({ num_virtual_token: 4 } as never),
      /did you mean `num_virtual_tokens`\?/,
    );
    throwsConfigError(
      () => TrainingArguments({ learning_rat: 1e-3 } as never),
      /TrainingArguments: unknown field `learning_rat` \(did you mean `learning_rate`\?\); no version of transformers has it/,
    );
  });

  it("from a file, unknown fields and those of newer peft versions are warnings, and kept", () => {
    let config: PeftConfig | undefined;
    const warnings = warningsOf(() => {
      const fields = {
        lora_alpah: 16,
        use_qalora: true,
        target_parameters: null,
        ensure_weight_tying: false,
        peft_version: "0.18.0",
      };
      config = configFromJson({ peft_type: "LORA", ...fields });
    });
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(warnings[0]!, /unknown field `lora_alpah` \(did you mean `lora_alpha`\?\)/);
    assert.match(
      warnings[1]!,
      /`use_qalora` = true \(a field of peft ≥ 0\.16\) is not implemented by peft-ts; it is kept in the config but ignored/,
    );
    assert.equal(config!["lora_alpah"], 16);
    assert.equal(config!["use_qalora"], true);
  });

  it("newer peft fields at their unused value are accepted from code; set, they are errors", () => {
    assert.equal(LoraConfig({ use_qalora: false, target_parameters: null } as never)["use_qalora"], false);
    throwsConfigError(
      () => LoraConfig({ use_qalora: true } as never),
      /`use_qalora` = true \(a field of peft ≥ 0\.16\) is not implemented/,
    );
    throwsConfigError(
      () => LoraConfig({ target_parameters: ["experts.gate_up_proj"] } as never),
      /`target_parameters`/,
    );
    throwsConfigError(
      () => PrefixTuningConfig({ init_weights: "zeros" } as never),
      /`init_weights` = "zeros" \(a string\) \(a field of peft ≥ 0\.19\)/,
    );
  });

  it("EVA, CorDA and other unimplemented values are refused, from code and files", () => {
    for (const build of [
      (f: Record<string, unknown>) => LoraConfig(f),
      (f: Record<string, unknown>) => configFromJson({ peft_type: "LORA", ...f }),
    ]) {
      throwsConfigError(
        () => build({ init_lora_weights: "corda" }),
        /`init_lora_weights` = "corda" \(a string\) is not implemented by peft-ts/,
      );
      throwsConfigError(
        () => build({ init_lora_weights: "eva" }),
        /`init_lora_weights` = "eva" \(a string\) is not implemented/,
      );
      throwsConfigError(() => build({ megatron_config: { tp: 2 } }), /`megatron_config`/);
    }
    assert.equal(
      LoraConfig({ trainable_token_indices: null, layer_replication: null, init_lora_weights: "gaussian" })[
        "init_lora_weights"
      ],
      "gaussian",
    );
    assert.deepEqual(
      LoraConfig({
        layer_replication: [
          [0, 2],
          [1, 2],
        ],
        lora_bias: true,
      })["layer_replication"],
      [
        [0, 2],
        [1, 2],
      ],
    );
  });

  it("TrainingArguments: transformers fields that change training are refused; infrastructure ones warn", () => {
    throwsConfigError(
      () => TrainingArguments({ label_smoothing_factor: 0.1 } as never),
      /`label_smoothing_factor` = 0\.1 \(a field of transformers TrainingArguments\) is not implemented/,
    );
    throwsConfigError(() => TrainingArguments({ neftune_noise_alpha: 5 } as never), /`neftune_noise_alpha`/);
    assert.equal(
      TrainingArguments({ label_smoothing_factor: 0, optim: "adamw_torch_fused" } as never).optim,
      "adamw_torch_fused",
    );
    const warnings = warningsOf(() => TrainingArguments({ report_to: "wandb", dataloader_num_workers: 4 } as never));
    assert.deepEqual(warnings, [
      "TrainingArguments: report_to, dataloader_num_workers concern(s) infrastructure that " +
        "peft-ts's Trainer does not have (ignored)",
    ]);
  });

  it("every field of transformers 4.44's TrainingArguments is known (accepted at its default)", () => {
    for (const [name, value] of Object.entries(PYTHON.training_arguments)) {
      if (["output_dir", "optim"].includes(name)) continue;
      warningsOf(() =>
        assert.doesNotThrow(() => TrainingArguments({ [name]: value } as never), `TrainingArguments.${name}`),
      );
    }
  });

  it(
    "peft train refuses typos in the peft and training_args objects, with a did-you-mean, " +
      "before loading the model",
    () => {
      const ws = cliWorkspace("peft-ts-typos-", {
        vocab_size: 64,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 2,
      });
      try {
        const write = (name: string, peft: Record<string, unknown>, args: Record<string, unknown>) =>
          writeFileSync(
            join(ws.root, name),
            JSON.stringify({
              model_name_or_path: "model",
              dataset: "train.json",
              peft: { peft_type: "LORA", ...peft },
              training_args: { output_dir: "out", max_steps: 1, ...args },
            }),
          );
        write("peft-typo.json", { lora_alpah: 16 }, {});
        let r = ws.run("train", "peft-typo.json");
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /unknown field `lora_alpah` \(did you mean `lora_alpha`\?\)/);
        write("args-typo.json", {}, { learning_rat: 0.1 });
        r = ws.run("train", "args-typo.json");
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /unknown field `learning_rat` \(did you mean `learning_rate`\?\)/);
        write("bad-type.json", { use_rslora: "false" }, {});
        r = ws.run("train", "bad-type.json");
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /`use_rslora` must be a boolean \(true or false\), got "false" \(a string\)/);
      } finally {
        rmSync(ws.root, { recursive: true, force: true });
      }
    },
  );
});
