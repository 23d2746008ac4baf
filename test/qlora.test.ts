/**
 * QLoRA: LoRA (and (IA)³) on quantised Linear layers. A 4-bit tiny Llama trains (the loss falls); its adapter loads in
 * the float32 model with the same (dequantised) weights and gives the same logits; merging re-quantises as peft does,
 * or, after dequantizeModel, gives a float32 model; prepareModelForKbitTraining freezes and upcasts.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import { dequantizeModel } from "../src/models/quantization.js";
import { Linear, Linear4bit, Linear8bitLt, QuantizedLinear } from "../src/nn/index.js";
import {
  IA3Config,
  LoraConfig,
  LoraLinear,
  PeftModel,
  TaskType,
  getPeftModel,
  prepareModelForKbitTraining,
} from "../src/peft/index.js";
import { quantize4bit } from "../src/backend/quant.js";
import { AdamW } from "../src/optim/index.js";
import * as T from "../src/tensor/index.js";
import { assertClose } from "./helpers.js";
import { LLAMA, logits, toyIds, trainSteps } from "./tiny-models.js";

const NF4 = { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true } as const;

/** The tiny Llama built quantised, and its float32 twin holding the dequantised weights. */
function quantizedAndTwin(
  seed: number,
  quantizationConfig: Record<string, unknown> = NF4,
): [PreTrainedModel, PreTrainedModel] {
  T.manualSeed(seed);
  const q = AutoModelForCausalLM.fromConfig(LLAMA, { quantizationConfig }).eval();
  T.manualSeed(seed);
  const twin = dequantizeModel(AutoModelForCausalLM.fromConfig(LLAMA, { quantizationConfig }).eval());
  for (const [p, m] of q.namedModules()) {
    if (m instanceof QuantizedLinear)
      assert.deepEqual(
        Array.from((twin.getSubmodule(p) as Linear).weight.dataSync()),
        Array.from(m.dequantizeWeight().dataSync()),
      );
  }
  return [q, twin];
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "peft-ts-qlora-"));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("QLoRA", () => {
  it(
    "LoRA on a 4-bit model trains, and the adapter gives the same logits on the float32 model " +
      "of the dequantised weights",
    () => {
      const [q, twin] = quantizedAndTwin(21);
      const peft = getPeftModel(
        prepareModelForKbitTraining(q),
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 16, target_modules: "all-linear" }),
      );
      assert.ok(peft.getBaseModel().getSubmodule("model.layers.0.mlp.down_proj") instanceof LoraLinear);
      // all params count the 4-bit weights unpacked, as peft does: 14 quantised layers of the tiny Llama
      const quantized = 2 * (32 * 32 + 16 * 32 * 2 + 32 * 32 + 3 * 32 * 64);
      const [trainable, all] = peft.getNbTrainableParameters();
      assert.equal(all, trainable + quantized + 64 * 32 * 2 + 32 * 5);
      peft.train();
      const opt = new AdamW(
        peft.parameters().filter((p) => p.requiresGrad),
        { lr: 2e-2 },
      );
      const losses = trainSteps(peft, opt, toyIds(), 20);
      assert.ok(losses[losses.length - 1]! < losses[0]! - 0.3, `losses ${losses.map((l) => l.toFixed(3)).join(", ")}`);
      peft.eval();
      const dir = join(tmp, "adapter");
      peft.savePretrained(dir);
      const onFloat = PeftModel.fromPretrained(twin, dir);
      assertClose(logits(onFloat), logits(peft), 1e-4, 1e-4, "logits");
    },
  );

  it("mergeAndUnload re-quantises W + ΔW (peft's bnb merge); after dequantizeModel it gives a float32 model", () => {
    const [q] = quantizedAndTwin(22);
    const peft = getPeftModel(
      q,
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        lora_alpha: 8,
        target_modules: ["q_proj", "v_proj"],
        init_lora_weights: false,
      }),
    );
    const layer = peft.getBaseModel().getSubmodule("model.layers.1.self_attn.v_proj") as LoraLinear;
    const expected = T.noGrad(() =>
      quantize4bit(
        Float32Array.from(
          T.add((layer.base_layer as Linear4bit).dequantizeWeight(), layer.getDeltaWeight("default")).dataSync(),
        ),
        "nf4",
        { doubleQuant: true },
      ),
    );
    const adapted = logits(peft);
    const merged = peft.mergeAndUnload();
    const v = merged.getSubmodule("model.layers.1.self_attn.v_proj");
    assert.ok(v instanceof Linear4bit);
    assert.deepEqual(Array.from(v.quantized.packed), Array.from(expected.packed));
    const [q2] = quantizedAndTwin(22);
    const peft2 = getPeftModel(
      q2,
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        lora_alpha: 8,
        target_modules: ["q_proj", "v_proj"],
        init_lora_weights: false,
      }),
    );
    const floatMerged = dequantizeModel(peft2).mergeAndUnload();
    assert.ok(floatMerged.getSubmodule("model.layers.1.self_attn.v_proj") instanceof Linear);
    assertClose(logits(floatMerged), adapted, 1e-4, 1e-4, "float merge");
  });

  it("(IA)³ and LoRA on an 8-bit model: forward runs through LLM.int8 and the adapters get gradients", () => {
    const [q] = quantizedAndTwin(23, { load_in_8bit: true });
    assert.ok(q.getSubmodule("model.layers.0.mlp.up_proj") instanceof Linear8bitLt);
    const ia3 = getPeftModel(
      q,
      IA3Config({
        task_type: TaskType.CAUSAL_LM,
        target_modules: ["k_proj", "down_proj"],
        feedforward_modules: ["down_proj"],
      }),
    );
    const ids = toyIds();
    T.tidy(() => ia3.forward({ inputIds: ids, labels: ids }).loss!.backward());
    const grads = ia3
      .parameters()
      .filter((p) => p.requiresGrad)
      .map((p) => p.grad);
    assert.ok(grads.length === 4 && grads.every((g) => g !== null && Array.from(g.dataSync()).some((x) => x !== 0)));
    assert.throws(() => ia3.mergeAndUnload(), /quantised layer is not supported/);
  });

  it(
    "prepareModelForKbitTraining freezes every parameter and turns the embeddings' output into " + "a gradient leaf",
    () => {
      const [q] = quantizedAndTwin(24);
      prepareModelForKbitTraining(q);
      assert.ok(q.parameters().every((p) => !p.requiresGrad && p.dtype === "float32"));
      const out = q.getInputEmbeddings().forward(toyIds());
      assert.equal(out.requiresGrad, true);
    },
  );
});
