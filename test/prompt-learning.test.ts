/**
 * Prompt tuning, P-tuning, prefix tuning and LLaMA-Adapter beyond the goldens: TEXT / SAMPLE_VOCAB init, the LSTM
 * encoder against a hand-computed LSTM, gradients reaching only the prompt parameters, a tiny model learning a toy
 * task with each method, greedy generation against step-by-step recomputation, save/load without the encoder,
 * token classification / QA outputs without the virtual positions, several adapters, errors.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import { AutoModelForCausalLM, AutoModelForSeq2SeqLM, fromPretrained } from "../src/models/auto.js";
import type { GenerativeModel } from "../src/models/generation/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import {
  AdaptionPromptConfig,
  PeftModel,
  PrefixTuningConfig,
  PromptEncoder,
  PromptEncoderConfig,
  PromptTuningConfig,
  TaskType,
  getPeftModel,
  type PromptLearningModel,
  configFromJson,
  type PeftConfig,
} from "../src/peft/index.js";
import { AdamW } from "../src/optim/index.js";
import { Trainer, TrainingArguments, Dataset, DataCollatorForSeq2Seq, listCheckpoints } from "../src/train/index.js";
import { bertConfig, bertTokenizerJson, writeFolder } from "./tokenizer-fixtures.js";
import { assertClose, values } from "./helpers.js";
import { modelDir } from "./golden.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";

const GPT2 = {
  model_type: "gpt2",
  vocab_size: 40,
  n_positions: 48,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
  initializer_range: 0.2,
};
const LLAMA = {
  model_type: "llama",
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  initializer_range: 0.2,
  pad_token_id: 0,
  bos_token_id: 1,
  eos_token_id: 2,
};
const T5 = {
  model_type: "t5",
  vocab_size: 40,
  d_model: 32,
  d_kv: 8,
  d_ff: 64,
  num_layers: 2,
  num_heads: 4,
  dropout_rate: 0,
  initializer_factor: 1,
  pad_token_id: 0,
  eos_token_id: 1,
  decoder_start_token_id: 0,
};

function tinyCausal(config: Record<string, unknown>, seed = 1): GenerativeModel {
  T.manualSeed(seed);
  return AutoModelForCausalLM.fromConfig(config).initWeights(new T.Generator(seed));
}

const ids = (rows: number[][]) => T.tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length]);

/** Parameter names with a gradient after backward, and the names that are trainable. */
function gradientNames(peft: PeftModel, loss: T.Tensor): { withGrad: string[]; trainable: string[] } {
  loss.backward();
  const named = peft.namedParameters();
  const withGrad = named.filter(([, p]) => p.grad && values(p.grad).some((v) => v !== 0)).map(([n]) => n);
  const trainable = named.filter(([, p]) => p.requiresGrad).map(([n]) => n);
  for (const [, p] of named) p.grad = null;
  return { withGrad, trainable };
}

describe("prompt tuning init", () => {
  const tokDir = writeFolder({ "tokenizer.json": bertTokenizerJson(), "tokenizer_config.json": bertConfig() });
  const bert = () => fromPretrained(modelDir("bert-seqcls"), "sequence-classification");

  it("TEXT copies the word embeddings of the init text's tokens (special tokens included), repeated or cut", () => {
    // "The cat sat" → [CLS] the cat sat [SEP] = [2, 5, 6, 7, 3].
    for (const [n, expected] of [
      [8, [2, 5, 6, 7, 3, 2, 5, 6]],
      [3, [2, 5, 6]],
    ] as const) {
      const model = bert();
      const peft = getPeftModel(
        model,
        PromptTuningConfig({
          task_type: TaskType.SEQ_CLS,
          num_virtual_tokens: n,
          prompt_tuning_init: "TEXT",
          prompt_tuning_init_text: "The cat sat",
          tokenizer_name_or_path: tokDir,
        }),
      );
      const table = model.getInputEmbeddings().weight;
      const prompt = (peft.base_model as PromptLearningModel).activeEncoder.embedding.weight;
      const want = T.noGrad(() => T.indexSelect(table, 0, T.tensor(Int32Array.from(expected), [n])));
      assert.deepEqual(values(prompt), values(want), `num_virtual_tokens ${n}`);
      assert.notEqual(prompt, table, "a copy, not the table itself");
      assert.equal(prompt.requiresGrad, true);
      assert.equal(table.requiresGrad, false);
    }
  });

  it("TEXT covers both submodules of a seq2seq model (2 · num_virtual_tokens rows)", () => {
    T.manualSeed(3);
    const t5 = AutoModelForSeq2SeqLM.fromConfig(T5);
    const peft = getPeftModel(
      t5,
      PromptTuningConfig({
        task_type: TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens: 3,
        prompt_tuning_init: "TEXT",
        prompt_tuning_init_text: "the cat sat",
        tokenizer_name_or_path: tokDir,
      }),
    );
    const want = T.noGrad(() =>
      T.indexSelect(t5.getInputEmbeddings().weight, 0, T.tensor(Int32Array.from([2, 5, 6, 7, 3, 2]), [6])),
    );
    assert.deepEqual(values((peft.base_model as PromptLearningModel).activeEncoder.embedding.weight), values(want));
  });

  it("SAMPLE_VOCAB starts every virtual token at some row of the vocabulary", () => {
    const model = tinyCausal(GPT2);
    const peft = getPeftModel(
      model,
      PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 6, prompt_tuning_init: "SAMPLE_VOCAB" }),
    );
    const table = values(model.getInputEmbeddings().weight),
      d = GPT2.n_embd;
    const prompt = values((peft.base_model as PromptLearningModel).activeEncoder.embedding.weight);
    for (let r = 0; r < 6; r++) {
      const row = prompt.slice(r * d, (r + 1) * d);
      const found = Array.from({ length: GPT2.vocab_size }, (_, v) => table.slice(v * d, (v + 1) * d)).some((w) =>
        w.every((x, i) => x === row[i]),
      );
      assert.ok(found, `row ${r} is a vocabulary row`);
    }
  });

  it("TEXT is refused without a tokenizer or a text; tokenizer_kwargs only with TEXT", () => {
    assert.throws(
      () => PromptTuningConfig({ num_virtual_tokens: 4, prompt_tuning_init: "TEXT", prompt_tuning_init_text: "x" }),
      /tokenizer_name_or_path can't be/,
    );
    assert.throws(
      () => PromptTuningConfig({ num_virtual_tokens: 4, prompt_tuning_init: "TEXT", tokenizer_name_or_path: tokDir }),
      /prompt_tuning_init_text can't be/,
    );
    assert.throws(
      () => PromptTuningConfig({ num_virtual_tokens: 4, tokenizer_kwargs: { padding_side: "left" } }),
      /tokenizer_kwargs only valid/,
    );
    assert.throws(
      () => PromptTuningConfig({ num_virtual_tokens: 4, prompt_tuning_init: "ZEROS" as never }),
      /`prompt_tuning_init` must be one of/,
    );
    assert.throws(
      () => PromptTuningConfig({ num_virtual_tokens: 2.5 }),
      /`num_virtual_tokens` must be an integer ≥ 1 or null, got 2.5/,
    );
    // As in peft, a config may leave num_virtual_tokens unset (to list defaults); a model needs it.
    assert.equal(PromptTuningConfig({})["num_virtual_tokens"], null);
    assert.throws(
      () => getPeftModel(tinyCausal(GPT2), PromptTuningConfig({ task_type: TaskType.CAUSAL_LM })),
      /num_virtual_tokens must be a positive integer \(the number of virtual tokens\), got null/,
    );
  });
});

/** σ(x). */
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** One direction of a PyTorch LSTM layer in doubles: gates i, f, g, o from W_ih·x + b_ih + W_hh·h + b_hh. */
function handLstmDirection(
  xs: number[][],
  wIh: number[],
  wHh: number[],
  bIh: number[],
  bHh: number[],
  hidden: number,
  reverse: boolean,
): number[][] {
  const inF = xs[0]!.length;
  let h = new Array<number>(hidden).fill(0),
    c = new Array<number>(hidden).fill(0);
  const out = new Array<number[]>(xs.length);
  const order = xs.map((_, i) => i);
  if (reverse) order.reverse();
  for (const t of order) {
    const gate = (k: number) => {
      let s = bIh[k]! + bHh[k]!;
      for (let j = 0; j < inF; j++) s += wIh[k * inF + j]! * xs[t]![j]!;
      for (let j = 0; j < hidden; j++) s += wHh[k * hidden + j]! * h[j]!;
      return s;
    };
    const next = Array.from({ length: hidden }, (_, u) => {
      const i = sigmoid(gate(u)),
        f = sigmoid(gate(hidden + u)),
        g = Math.tanh(gate(2 * hidden + u)),
        o = sigmoid(gate(3 * hidden + u));
      c[u] = f * c[u]! + i * g;
      return o * Math.tanh(c[u]!);
    });
    h = next;
    out[t] = [...h];
  }
  return out;
}

describe("P-tuning encoders", () => {
  for (const layers of [1, 2]) {
    it(
      `the LSTM encoder (bidirectional, ${layers} layer${layers > 1 ? "s" : ""}, then ` +
        `Linear-ReLU-Linear) equals a hand-computed LSTM`,
      () => {
        T.manualSeed(11);
        const enc = new PromptEncoder(
          PromptEncoderConfig({
            task_type: TaskType.CAUSAL_LM,
            num_virtual_tokens: 4,
            token_dim: 6,
            num_transformer_submodules: 1,
            encoder_hidden_size: 3,
            encoder_reparameterization_type: "LSTM",
            encoder_num_layers: layers,
          }),
        );
        const p = (name: string) => values(enc.getTensor(name));
        let xs: number[][] = Array.from({ length: 4 }, (_, r) => p("embedding.weight").slice(r * 6, (r + 1) * 6));
        for (let l = 0; l < layers; l++) {
          const dir = (sfx: string, reverse: boolean) =>
            handLstmDirection(
              xs,
              p(`lstm_head.weight_ih_l${l}${sfx}`),
              p(`lstm_head.weight_hh_l${l}${sfx}`),
              p(`lstm_head.bias_ih_l${l}${sfx}`),
              p(`lstm_head.bias_hh_l${l}${sfx}`),
              3,
              reverse,
            );
          const fwd = dir("", false),
            bwd = dir("_reverse", true);
          xs = xs.map((_, t) => [...fwd[t]!, ...bwd[t]!]);
        }
        const linear = (x: number[], w: number[], b: number[], out: number) =>
          Array.from({ length: out }, (_, o) => b[o]! + x.reduce((s, v, j) => s + w[o * x.length + j]! * v, 0));
        const expected = xs.flatMap((x) =>
          linear(
            linear(x, p("mlp_head.0.weight"), p("mlp_head.0.bias"), 6).map((v) => Math.max(v, 0)),
            p("mlp_head.2.weight"),
            p("mlp_head.2.bias"),
            6,
          ),
        );
        assertClose(values(T.noGrad(() => enc.encode())), expected, 1e-5, 1e-5, "LSTM encoder output");
      },
    );
  }

  it("the MLP encoder is Linear-ReLU-Linear-ReLU-Linear on the embedding", () => {
    T.manualSeed(12);
    const enc = new PromptEncoder(
      PromptEncoderConfig({
        task_type: TaskType.CAUSAL_LM,
        num_virtual_tokens: 3,
        token_dim: 4,
        num_transformer_submodules: 1,
        encoder_hidden_size: 5,
      }),
    );
    const names = enc.namedParameters().map(([n]) => n);
    assert.deepEqual(names, [
      "embedding.weight",
      "mlp_head.0.weight",
      "mlp_head.0.bias",
      "mlp_head.2.weight",
      "mlp_head.2.bias",
      "mlp_head.4.weight",
      "mlp_head.4.bias",
    ]);
    const want = T.noGrad(() => {
      const l = (x: T.Tensor, i: number) =>
        T.linear(x, enc.getTensor(`mlp_head.${i}.weight`), enc.getTensor(`mlp_head.${i}.bias`));
      return l(T.relu(l(T.relu(l(enc.embedding.weight, 0)), 2)), 4);
    });
    assertClose(values(T.noGrad(() => enc.encode())), values(want), 1e-6);
  });
});

/** A fresh PEFT model of each method on a tiny model, with a batch and labels for a causal-LM step. */
interface MethodCase {
  name: string;
  base: Record<string, unknown>;
  config: () => PeftConfig;
  /** Parameter-name fragment that marks this method's trainable tensors. */
  marker: RegExp;
  /** Learning rate of the toy task (N(0, 1) prompts need larger steps than the small encoders' weights). */
  lr?: number;
}

const CAUSAL: MethodCase[] = [
  {
    name: "prompt tuning",
    base: GPT2,
    config: () => PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 4 }),
    marker: /^base_model\.prompt_encoder\.default\./,
    lr: 0.2,
  },
  {
    name: "P-tuning (MLP)",
    base: GPT2,
    config: () =>
      PromptEncoderConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 4, encoder_hidden_size: 16 }),
    marker: /^base_model\.prompt_encoder\.default\./,
  },
  {
    name: "P-tuning (LSTM)",
    base: GPT2,
    config: () =>
      PromptEncoderConfig({
        task_type: TaskType.CAUSAL_LM,
        num_virtual_tokens: 4,
        encoder_hidden_size: 16,
        encoder_reparameterization_type: "LSTM",
      }),
    marker: /^base_model\.prompt_encoder\.default\./,
  },
  {
    name: "prefix tuning",
    base: GPT2,
    config: () => PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 4 }),
    marker: /^base_model\.prompt_encoder\.default\./,
  },
  {
    name: "prefix tuning with projection",
    base: GPT2,
    config: () =>
      PrefixTuningConfig({
        task_type: TaskType.CAUSAL_LM,
        num_virtual_tokens: 4,
        prefix_projection: true,
        encoder_hidden_size: 16,
      }),
    marker: /^base_model\.prompt_encoder\.default\./,
  },
  {
    name: "prefix tuning on GQA llama",
    base: LLAMA,
    config: () => PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 4 }),
    marker: /^base_model\.prompt_encoder\.default\./,
  },
  {
    name: "prompt tuning on llama",
    base: LLAMA,
    config: () => PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 4 }),
    marker: /^base_model\.prompt_encoder\.default\./,
    lr: 0.2,
  },
  {
    name: "LLaMA-Adapter",
    base: LLAMA,
    config: () => AdaptionPromptConfig({ task_type: TaskType.CAUSAL_LM, adapter_len: 4, adapter_layers: 1 }),
    marker: /\.adaption_(prompt|gate)\.default$/,
    lr: 0.1,
  },
];

/** Sequences to memorise: 3, 4, … counting up from a per-row start, with padding on the right of the second row. */
const BATCH = {
  inputIds: ids([
    [5, 6, 7, 8, 9, 10, 11, 12],
    [20, 21, 22, 23, 24, 25, 0, 0],
  ]),
  attentionMask: ids([
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 0, 0],
  ]),
};
const LABELS = ids([
  [5, 6, 7, 8, 9, 10, 11, 12],
  [20, 21, 22, 23, 24, 25, -100, -100],
]);

describe("gradients and training", () => {
  for (const m of CAUSAL) {
    it(`${m.name}: gradients reach exactly the prompt parameters`, () => {
      const peft = getPeftModel(tinyCausal(m.base), m.config());
      if (m.name === "LLaMA-Adapter") {
        // The gate starts at zero, so the prompt gets no gradient at first; open it a little.
        T.noGrad(() =>
          peft
            .namedParameters()
            .filter(([n]) => n.includes("adaption_gate"))[0]![1]
            .copy_(T.tensor([0.5], [1])),
        );
      }
      const { withGrad, trainable } = gradientNames(peft, peft.forward({ ...BATCH, labels: LABELS }).loss!);
      assert.ok(trainable.length > 0 && trainable.every((n) => m.marker.test(n)), `trainable: ${trainable.join(", ")}`);
      assert.deepEqual(withGrad.sort(), [...trainable].sort());
    });

    it(`${m.name}: a tiny model learns to continue counting (loss falls clearly)`, () => {
      const peft = getPeftModel(tinyCausal(m.base, 2), m.config());
      const opt = new AdamW(
        peft.parameters().filter((p) => p.requiresGrad),
        { lr: m.lr ?? 3e-2, weightDecay: 0 },
      );
      const losses: number[] = [];
      for (let step = 0; step < 60; step++) {
        T.tidy(() => {
          const loss = peft.forward({ ...BATCH, labels: LABELS }).loss!;
          losses.push(loss.dataSync()[0]!);
          loss.backward();
          opt.step();
          opt.zeroGrad();
        });
      }
      assert.ok(
        losses[losses.length - 1]! < 0.5 * losses[0]!,
        `${m.name}: losses ${losses
          .filter((_, i) => i % 6 === 0)
          .map((l) => l.toFixed(3))
          .join(" ")}`,
      );
    });
  }
});

/**
 * Greedy decoding by full recomputation: each step runs the whole sequence through peft.forward (no cache).
 * Prompt learning counts positions from the start of the padded sequence (peft drops position ids); other
 * methods get generate()'s positions from the mask (cumsum − 1) when `maskPositions`.
 */
function recomputeGreedy(
  peft: PeftModel,
  prompt: number[][],
  mask: number[][],
  steps: number,
  seq2seq: boolean,
  maskPositions = false,
): number[][] {
  const seqs = seq2seq ? prompt.map(() => [0]) : prompt.map((r) => [...r]);
  const masks = mask.map((r) => [...r]);
  for (let s = 0; s < steps; s++) {
    const logits = T.tidy(() => {
      const out = T.noGrad(() =>
        seq2seq
          ? peft.forward({ inputIds: ids(prompt), attentionMask: ids(mask), decoderInputIds: ids(seqs) })
          : peft.forward({
              inputIds: ids(seqs),
              attentionMask: ids(masks),
              ...(maskPositions
                ? {
                    positionIds: ids(
                      masks.map((row) => {
                        let seen = 0;
                        return row.map((m) => (m === 1 ? seen++ : 1));
                      }),
                    ),
                  }
                : {}),
            }),
      );
      return values(T.select(out.logits, 1, out.logits.shape[1]! - 1));
    });
    const vocab = logits.length / seqs.length;
    seqs.forEach((row, r) => {
      const scores = logits.slice(r * vocab, (r + 1) * vocab);
      row.push(scores.indexOf(Math.max(...scores)));
      masks[r]!.push(1);
    });
  }
  return seqs;
}

describe("generation with prompt learning", () => {
  const prompt = [
    [0, 0, 7, 8, 9, 10],
    [11, 12, 13, 14, 15, 16],
  ];
  const mask = [
    [0, 0, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1],
  ];
  const cases: [string, () => GenerativeModel, () => PeftConfig, boolean][] = [
    [
      "prompt-tuned GPT-2",
      () => tinyCausal(GPT2, 4),
      () => PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
      false,
    ],
    [
      "prefix-tuned GPT-2",
      () => tinyCausal(GPT2, 4),
      () => PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
      false,
    ],
    [
      "P-tuned (LSTM) GPT-2",
      () => tinyCausal(GPT2, 4),
      () =>
        PromptEncoderConfig({
          task_type: TaskType.CAUSAL_LM,
          num_virtual_tokens: 3,
          encoder_reparameterization_type: "LSTM",
        }),
      false,
    ],
    [
      "prompt-tuned llama",
      () => tinyCausal(LLAMA, 4),
      () => PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
      false,
    ],
    [
      "prefix-tuned llama (GQA)",
      () => tinyCausal(LLAMA, 4),
      () => PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3, prefix_projection: true }),
      false,
    ],
    [
      "LLaMA-Adapter llama",
      () => tinyCausal(LLAMA, 4),
      () => AdaptionPromptConfig({ task_type: TaskType.CAUSAL_LM, adapter_len: 3, adapter_layers: 2 }),
      false,
    ],
    [
      "prompt-tuned T5",
      () => {
        T.manualSeed(4);
        return AutoModelForSeq2SeqLM.fromConfig(T5);
      },
      () => PromptTuningConfig({ task_type: TaskType.SEQ_2_SEQ_LM, num_virtual_tokens: 3 }),
      true,
    ],
    [
      "prefix-tuned T5",
      () => {
        T.manualSeed(4);
        return AutoModelForSeq2SeqLM.fromConfig(T5);
      },
      () => PrefixTuningConfig({ task_type: TaskType.SEQ_2_SEQ_LM, num_virtual_tokens: 3 }),
      true,
    ],
  ];
  for (const [name, base, config, seq2seq] of cases) {
    it(`${name}: greedy generation with the cache equals step-by-step recomputation`, () => {
      const peft = getPeftModel(base(), config());
      if (name.startsWith("LLaMA-Adapter"))
        T.noGrad(() => {
          for (const [n, p] of peft.namedParameters()) if (n.includes("adaption_gate")) p.copy_(T.tensor([0.7], [1]));
        });
      const got = peft.generate({
        inputIds: ids(prompt),
        attentionMask: ids(mask),
        maxNewTokens: 5,
        eosTokenId: [],
        padTokenId: 0,
      });
      const want = recomputeGreedy(peft, prompt, mask, 5, seq2seq, name.startsWith("LLaMA-Adapter"));
      assert.deepEqual(values(got), want.flat());
      const plain = peft.withAdapterDisabled(() =>
        peft.generate({
          inputIds: ids(prompt),
          attentionMask: ids(mask),
          maxNewTokens: 5,
          eosTokenId: [],
          padTokenId: 0,
        }),
      );
      const baseOut = base().generate({
        inputIds: ids(prompt),
        attentionMask: ids(mask),
        maxNewTokens: 5,
        eosTokenId: [],
        padTokenId: 0,
      });
      assert.deepEqual(values(plain), values(baseOut), "withAdapterDisabled generates like the base model");
    });
  }
});

describe("saving and loading prompt adapters", () => {
  const tmp = () => mkdtempSync(join(tmpdir(), "peft-ts-prompt-"));

  for (const [name, config] of [
    [
      "P-tuning (LSTM)",
      () =>
        PromptEncoderConfig({
          task_type: TaskType.CAUSAL_LM,
          num_virtual_tokens: 3,
          encoder_reparameterization_type: "LSTM",
          encoder_hidden_size: 8,
        }),
    ],
    [
      "prefix tuning with projection",
      () =>
        PrefixTuningConfig({
          task_type: TaskType.CAUSAL_LM,
          num_virtual_tokens: 3,
          prefix_projection: true,
          encoder_hidden_size: 8,
        }),
    ],
  ] as const) {
    it(
      `${name}: prompt_embeddings is the encoder's output; the reloaded adapter reproduces the ` +
        `logits without the encoder`,
      () => {
        const peft = getPeftModel(tinyCausal(GPT2, 5), config());
        const before = T.noGrad(() => peft.forward(BATCH)).logits;
        const dir = tmp();
        peft.savePretrained(dir);
        const saved = peft.adapterStateDict();
        assert.deepEqual([...saved.keys()], ["prompt_embeddings"]);
        assertClose(
          values(saved.get("prompt_embeddings")!),
          values(T.noGrad(() => (peft.base_model as PromptLearningModel).activeEncoder.encode())),
          0,
        );

        const loaded = PeftModel.fromPretrained(tinyCausal(GPT2, 5), dir);
        const enc = (loaded.base_model as PromptLearningModel).activeEncoder;
        assert.deepEqual(
          enc.namedParameters().map(([n, p]) => [n, p.shape]),
          [["embedding.weight", saved.get("prompt_embeddings")!.shape]],
          "only the embedding, holding the output",
        );
        assert.equal(loaded.getNbTrainableParameters()[0], 0, "frozen for inference");
        assertClose(values(T.noGrad(() => loaded.forward(BATCH)).logits), values(before), 1e-5);
        const config2 = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
        assert.equal(config2["inference_mode"], true);

        // Loaded for training: the encoder network comes back from peft-ts's prompt_encoder.safetensors.
        assert.ok(existsSync(join(dir, "prompt_encoder.safetensors")));
        const trainable = PeftModel.fromPretrained(tinyCausal(GPT2, 5), dir, { isTrainable: true });
        assert.deepEqual(trainable.getNbTrainableParameters(), peft.getNbTrainableParameters());
        assertClose(values(T.noGrad(() => trainable.forward(BATCH)).logits), values(before), 1e-5);
        // A folder without it (as Python peft writes): the saved output is trained directly.
        rmSync(join(dir, "prompt_encoder.safetensors"));
        const direct = PeftModel.fromPretrained(tinyCausal(GPT2, 5), dir, { isTrainable: true });
        assert.equal(direct.getNbTrainableParameters()[0], saved.get("prompt_embeddings")!.size);
        assertClose(values(T.noGrad(() => direct.forward(BATCH)).logits), values(before), 1e-5);
      },
    );
  }

  it(
    "several prompt adapters: setAdapter switches the prompt; a second adapter saves to its " +
      "subfolder and loads back",
    () => {
      const peft = getPeftModel(
        tinyCausal(GPT2, 6),
        PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
      );
      peft.addAdapter("other", PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 5 }));
      const first = values(T.noGrad(() => peft.forward(BATCH)).logits);
      peft.setAdapter("other");
      const out = T.noGrad(() => peft.forward(BATCH)).logits;
      assert.deepEqual(out.shape, [2, 5 + 8, GPT2.vocab_size]);
      const second = values(out);
      assert.throws(
        () => peft.addAdapter("lora", configFromJson({ peft_type: "LORA", task_type: "CAUSAL_LM" })),
        /cannot add a LORA adapter/,
      );
      const dir = tmp();
      peft.savePretrained(dir);
      const reloaded = PeftModel.fromPretrained(tinyCausal(GPT2, 6), dir);
      reloaded.loadAdapter(join(dir, "other"), "other");
      assertClose(values(T.noGrad(() => reloaded.forward(BATCH)).logits), first, 1e-5);
      reloaded.setAdapter("other");
      assertClose(values(T.noGrad(() => reloaded.forward(BATCH)).logits), second, 1e-5);
      reloaded.deleteAdapter("other");
      assert.deepEqual(Object.keys(reloaded.peftConfig), ["default"]);
      assertClose(values(T.noGrad(() => reloaded.forward(BATCH)).logits), first, 1e-5);
    },
  );

  it("a prompt adapter made for another model size is refused, naming the mismatch", () => {
    const peft = getPeftModel(
      tinyCausal(GPT2, 6),
      PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
    );
    const dir = tmp();
    peft.savePretrained(dir);
    assert.throws(
      () => PeftModel.fromPretrained(tinyCausal({ ...GPT2, n_embd: 16 }, 6), dir),
      /token_dim 32 does not fit this model \(the model's 16\)/,
    );
  });

  it("prompt adapters cannot be merged; unload returns the untouched model", () => {
    const model = tinyCausal(GPT2, 6);
    const peft = getPeftModel(model, PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }));
    assert.throws(() => peft.mergeAndUnload(), /cannot be merged/);
    assert.equal(peft.unload(), model);
  });
});

describe("prompt learning per task", () => {
  const bertIds = {
    inputIds: ids([
      [2, 5, 6, 7, 3, 0],
      [2, 9, 8, 3, 0, 0],
    ]),
    attentionMask: ids([
      [1, 1, 1, 1, 1, 0],
      [1, 1, 1, 1, 0, 0],
    ]),
  };

  it("withAdapterDisabled gives the base model's outputs (prompt tuning and prefix tuning, causal LM)", () => {
    for (const config of [
      PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
      PrefixTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
    ]) {
      const model = tinyCausal(GPT2, 7);
      const base = values((T.noGrad(() => model.forward(BATCH)) as ModelOutput).logits);
      const peft = getPeftModel(model, config);
      assert.deepEqual(values(peft.withAdapterDisabled(() => T.noGrad(() => peft.forward(BATCH))).logits), base);
      assert.notDeepEqual(values(T.noGrad(() => peft.forward(BATCH)).logits).slice(-base.length), base);
    }
  });

  it("causal LM: labels get -100 for the virtual tokens, so the loss is the base loss of the shifted sequence", () => {
    const peft = getPeftModel(
      tinyCausal(GPT2, 7),
      PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 3 }),
    );
    const out = T.noGrad(() => peft.forward({ ...BATCH, labels: LABELS }));
    // The same loss from the logits: positions 3.. of the output predict the labels.
    // Position t predicts label t + 1: the last virtual token (position 2) predicts the first real token, the real
    // tokens predict the rest, so positions 2 … 9 are scored against the 8 labels.
    const want = T.noGrad(() =>
      T.crossEntropy(T.reshape(T.narrow(out.logits, 1, 2, 8), [16, -1]), T.reshape(LABELS, [16])),
    );
    assertClose(values(out.loss!), values(want), 1e-6);
  });

  it("token classification: the virtual tokens' logits are dropped and the loss uses the real tokens", () => {
    const model = fromPretrained(modelDir("bert-tokcls"), "token-classification");
    const labels = ids([
      [0, 1, 2, 3, 4, -100],
      [4, 3, 2, 1, -100, -100],
    ]);
    const peft = getPeftModel(model, PromptTuningConfig({ task_type: TaskType.TOKEN_CLS, num_virtual_tokens: 4 }));
    const out = T.noGrad(() =>
      peft.forward({
        ...bertIds,
        labels,
        tokenTypeIds: ids([
          [0, 0, 0, 0, 0, 0],
          [0, 0, 0, 0, 0, 0],
        ]),
      }),
    );
    assert.deepEqual(out.logits.shape, [2, 6, 5]);
    const want = T.noGrad(() => T.crossEntropy(T.reshape(out.logits, [12, 5]), T.reshape(labels, [12])));
    assertClose(values(out.loss!), values(want), 1e-6);
    const { withGrad, trainable } = gradientNames(peft, peft.forward({ ...bertIds, labels }).loss!);
    assert.deepEqual(withGrad, trainable);
    assert.deepEqual(trainable, ["base_model.prompt_encoder.default.embedding.weight"]);
    // Prefix tuning adds no positions: logits keep the input length.
    const prefix = getPeftModel(
      fromPretrained(modelDir("bert-tokcls"), "token-classification"),
      PrefixTuningConfig({ task_type: TaskType.TOKEN_CLS, num_virtual_tokens: 4 }),
    );
    assert.deepEqual(T.noGrad(() => prefix.forward({ ...bertIds, labels })).logits.shape, [2, 6, 5]);
  });

  it(
    "question answering (as peft 0.15): start/end logits cover the virtual tokens too and the " +
      "loss uses the positions as given",
    () => {
      const peft = getPeftModel(
        fromPretrained(modelDir("bert-qa"), "question-answering"),
        PromptEncoderConfig({ task_type: TaskType.QUESTION_ANS, num_virtual_tokens: 4, encoder_hidden_size: 8 }),
      );
      // Row 1's end position 20 is past the 4 + 6 positions: it is clamped to 10, the ignored index (transformers' rule).
      const start = [1, 2],
        end = [3, 20];
      const out = T.noGrad(() =>
        peft.forward({
          ...bertIds,
          startPositions: ids([start]).view_([2], [1], 0),
          endPositions: ids([end]).view_([2], [1], 0),
        }),
      );
      assert.deepEqual(out.startLogits!.shape, [2, 10]);
      assert.deepEqual(out.endLogits!.shape, [2, 10]);
      // By hand: the mean over rows of −log softmax(logits)[position], start and end averaged, ignored rows left out.
      const nll = (logits: T.Tensor, positions: number[]): number => {
        const v = values(logits);
        const terms = positions.flatMap((p, r) => {
          if (p >= 10) return [];
          const row = v.slice(r * 10, (r + 1) * 10);
          const max = Math.max(...row);
          return [-(row[p]! - max - Math.log(row.reduce((acc, x) => acc + Math.exp(x - max), 0)))];
        });
        return terms.reduce((a, x) => a + x, 0) / terms.length;
      };
      assertClose(values(out.loss!), [(nll(out.startLogits!, start) + nll(out.endLogits!, end)) / 2], 1e-5);
    },
  );

  it(
    "sequence classification: the head is not trained (as in peft 0.15) and the classifier " +
      "sees the prompted input",
    () => {
      const model = fromPretrained(modelDir("bert-seqcls"), "sequence-classification");
      const peft = getPeftModel(
        model,
        PrefixTuningConfig({ task_type: TaskType.SEQ_CLS, num_virtual_tokens: 4, prefix_projection: true }),
      );
      assert.ok(!("modules_to_save" in peft.activePeftConfig));
      const { withGrad, trainable } = gradientNames(
        peft,
        peft.forward({ ...bertIds, labels: ids([[1], [0]]).view_([2], [1], 0) }).loss!,
      );
      assert.deepEqual(withGrad.sort(), trainable.sort());
      assert.ok(trainable.every((n) => n.startsWith("base_model.prompt_encoder.")));
    },
  );

  it("the Trainer trains a prompt-tuned model (the path `peft train` takes)", () => {
    const peft = getPeftModel(
      tinyCausal(GPT2, 8),
      configFromJson({ peft_type: "PROMPT_TUNING", task_type: "CAUSAL_LM", num_virtual_tokens: 4 }),
    );
    const rows = Array.from({ length: 8 }, (_, i) => {
      const r = Array.from({ length: 8 }, (_, j) => 3 + 10 * (i % 2) + j);
      return { input_ids: r, labels: r };
    });
    const args = TrainingArguments({
      output_dir: mkdtempSync(join(tmpdir(), "peft-ts-prompt-trainer-")),
      learning_rate: 0.2,
      per_device_train_batch_size: 4,
      max_steps: 30,
      logging_steps: 5,
      save_strategy: "no",
      lr_scheduler_type: "constant",
    });
    const trainer = new Trainer({
      model: peft,
      args,
      trainDataset: new Dataset(rows),
      dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
    });
    trainer.train();
    const losses = trainer.state.log_history.map((e) => e["loss"]).filter((l): l is number => l !== undefined);
    assert.ok(losses[losses.length - 1]! < 0.7 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(" ")}`);
  });

  it(
    "the Trainer resumes a P-tuning (LSTM) run from a checkpoint exactly (the encoder network " + "is checkpointed)",
    () => {
      const rows = Array.from({ length: 8 }, (_, i) => {
        const r = Array.from({ length: 8 }, (_, j) => 3 + 10 * (i % 2) + j);
        return { input_ids: r, labels: r };
      });
      const config = () =>
        PromptEncoderConfig({
          task_type: TaskType.CAUSAL_LM,
          num_virtual_tokens: 3,
          encoder_reparameterization_type: "LSTM",
          encoder_hidden_size: 8,
        });
      const argsFor = (dir: string) =>
        TrainingArguments({
          output_dir: dir,
          learning_rate: 1e-2,
          per_device_train_batch_size: 4,
          max_steps: 4,
          save_steps: 2,
          logging_steps: 1,
          lr_scheduler_type: "cosine",
        });
      const encoderValues = (m: PeftModel) =>
        m
          .namedParameters()
          .filter(([n]) => n.includes("prompt_encoder"))
          .flatMap(([, p]) => values(p));
      const fullDir = mkdtempSync(join(tmpdir(), "peft-ts-prompt-resume-"));
      const full = getPeftModel(tinyCausal(GPT2, 10), config());
      new Trainer({
        model: full,
        args: argsFor(fullDir),
        trainDataset: new Dataset(rows),
        dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
      }).train();
      assert.deepEqual(
        listCheckpoints(fullDir).map((d) => d.split("/").pop()),
        ["checkpoint-2", "checkpoint-4"],
      );
      const resumed = getPeftModel(tinyCausal(GPT2, 10), config());
      new Trainer({
        model: resumed,
        args: argsFor(mkdtempSync(join(tmpdir(), "peft-ts-prompt-resume-"))),
        trainDataset: new Dataset(rows),
        dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
      }).train({ resumeFromCheckpoint: join(fullDir, "checkpoint-2") });
      assert.deepEqual(encoderValues(resumed), encoderValues(full));
    },
  );

  it("configFromJson accepts every prompt method's adapter_config.json fields", () => {
    for (const peft_type of ["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"]) {
      const c = configFromJson({ peft_type, task_type: "CAUSAL_LM", num_virtual_tokens: 8 });
      assert.equal(c.peft_type, peft_type);
      assert.equal(c["num_virtual_tokens"], 8);
    }
    const a = configFromJson({
      peft_type: "ADAPTION_PROMPT",
      task_type: "CAUSAL_LM",
      adapter_len: 4,
      adapter_layers: 1,
    });
    assert.deepEqual([a["adapter_len"], a["adapter_layers"], a["target_modules"]], [4, 1, null]);
    assert.throws(
      () => configFromJson({ peft_type: "P_TUNING", num_virtual_tokens: 8, encoder_reparameterization_type: "GRU" }),
      /`encoder_reparameterization_type` must be one of "MLP", "LSTM", got "GRU"/,
    );
    assert.throws(
      () => configFromJson({ peft_type: "ADAPTION_PROMPT", adapter_len: 4, adapter_layers: 0 }),
      /`adapter_layers` must be an integer ≥ 1 or null, got 0/,
    );
    assert.throws(
      () => getPeftModel(tinyCausal(LLAMA), configFromJson({ peft_type: "ADAPTION_PROMPT", adapter_len: 4 })),
      /adapter_layers must be a positive integer, got null/,
    );
    // Defaults can be listed (peft info does): every method's config builds from its peft_type alone.
    for (const peft_type of ["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT"])
      assert.equal(configFromJson({ peft_type }).peft_type, peft_type);
  });
});

describe("LLaMA-Adapter", () => {
  it("the zero-initialised gate leaves the model's outputs unchanged until it is trained", () => {
    const model = tinyCausal(LLAMA, 9);
    const base = values((T.noGrad(() => model.forward(BATCH)) as ModelOutput).logits);
    const peft = getPeftModel(
      model,
      AdaptionPromptConfig({ task_type: TaskType.CAUSAL_LM, adapter_len: 3, adapter_layers: 2 }),
    );
    assertClose(values(T.noGrad(() => peft.forward(BATCH)).logits), base, 1e-6);
    assert.deepEqual(
      peft
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([n, p]) => [n, p.shape]),
      [
        ["base_model.model.model.layers.0.self_attn.adaption_prompt.default", [1, 3, 32]],
        ["base_model.model.model.layers.0.self_attn.adaption_gate.default", [1]],
        ["base_model.model.model.layers.1.self_attn.adaption_prompt.default", [1, 3, 32]],
        ["base_model.model.model.layers.1.self_attn.adaption_gate.default", [1]],
      ],
    );
    T.noGrad(() => {
      for (const [n, p] of peft.namedParameters()) if (n.includes("adaption_gate")) p.copy_(T.tensor([0.5], [1]));
    });
    const adapted = values(T.noGrad(() => peft.forward(BATCH)).logits);
    assert.ok(adapted.some((v, i) => Math.abs(v - base[i]!) > 1e-3));
    assertClose(values(peft.withAdapterDisabled(() => T.noGrad(() => peft.forward(BATCH))).logits), base, 1e-6);
    assert.throws(() => peft.mergeAndUnload(), /cannot be merged/);
    const unloaded = peft.unload();
    assertClose(values((T.noGrad(() => unloaded.forward(BATCH)) as ModelOutput).logits), base, 1e-6);
  });

  it("refuses non-LLaMA models and more adapter layers than the model has", () => {
    assert.throws(
      () => getPeftModel(tinyCausal(GPT2), AdaptionPromptConfig({ adapter_len: 2, adapter_layers: 1 })),
      /Unsupported model type for adaption prompt: 'gpt2'/,
    );
    assert.throws(
      () => getPeftModel(tinyCausal(LLAMA), AdaptionPromptConfig({ adapter_len: 2, adapter_layers: 3 })),
      /more adapter layers '3' than the model has '2'/,
    );
  });
});

describe("peft CLI with prompt methods", () => {
  it("`peft train` accepts each method's config, and `peft generate` uses the adapter it wrote", () => {
    const ws = cliWorkspace("peft-ts-prompt-cli-", LLAMA);
    const methods: Record<string, Record<string, unknown>> = {
      PROMPT_TUNING: {
        num_virtual_tokens: 4,
        prompt_tuning_init: "TEXT",
        prompt_tuning_init_text: "hello world",
        tokenizer_name_or_path: join(ws.root, "model"),
      },
      P_TUNING: { num_virtual_tokens: 4, encoder_reparameterization_type: "LSTM", encoder_hidden_size: 8 },
      PREFIX_TUNING: { num_virtual_tokens: 4, prefix_projection: true },
      ADAPTION_PROMPT: { adapter_len: 4, adapter_layers: 1 },
    };
    for (const [type, fields] of Object.entries(methods)) {
      trainMethod(ws, type, fields);
      const gen = ws.run(
        "generate",
        "--model",
        "model",
        "--adapter",
        `out-${type}`,
        "--prompt",
        "say hello",
        "--max-new-tokens",
        "3",
      );
      assert.equal(gen.status, 0, `${type}: peft generate failed:\n${gen.stderr}`);
    }
  });
});
