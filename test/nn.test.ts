/** nn: the module tree's PyTorch semantics, layer initialisations and forwards against hand computations. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as T from "../src/tensor/index.js";
import * as nn from "../src/nn/index.js";
import { assertClose, gradCheck, randTensor, randValues } from "./helpers.js";

class Block extends nn.Module {
  proj = this.registerModule("proj", new nn.Linear(3, 2));
  norm = this.registerModule("norm", new nn.LayerNorm(2));
}

class Tiny extends nn.Module {
  embed = this.registerModule("embed", new nn.Embedding(5, 3));
  layers = this.registerModule("layers", new nn.ModuleList([new Block(), new Block()]));
  head = this.registerModule("head", new nn.Linear(3, 5, { bias: false }));
  constructor() {
    super();
    this.head.weight = this.head.registerParameter("weight", this.embed.weight); // tied, like an LM head
  }
}

describe("Module tree", () => {
  it("lists modules and parameters in registration order with dotted names, tied weights once", () => {
    const m = new Tiny();
    assert.deepEqual(
      m.namedModules().map(([n]) => n),
      [
        "",
        "embed",
        "layers",
        "layers.0",
        "layers.0.proj",
        "layers.0.norm",
        "layers.1",
        "layers.1.proj",
        "layers.1.norm",
        "head",
      ],
    );
    assert.deepEqual(
      m.namedParameters().map(([n]) => n),
      [
        "embed.weight",
        "layers.0.proj.weight",
        "layers.0.proj.bias",
        "layers.0.norm.weight",
        "layers.0.norm.bias",
        "layers.1.proj.weight",
        "layers.1.proj.bias",
        "layers.1.norm.weight",
        "layers.1.norm.bias",
      ],
    );
    assert.equal(m.numParameters(), 15 + 2 * (6 + 2 + 2 + 2));
    assert.ok(m.stateDict().has("head.weight"), "the state dict lists a tied tensor under every name, as PyTorch does");
  });

  it("getSubmodule and setSubmodule by path; the replacement is what forward code sees", () => {
    const m = new Tiny();
    const block = m.getSubmodule("layers.1") as Block;
    assert.ok(block.proj instanceof nn.Linear);
    const replacement = new nn.Linear(3, 2, { bias: false });
    m.setSubmodule("layers.1.proj", replacement);
    assert.equal(block.proj, replacement);
    assert.equal(m.getSubmodule("layers.1.proj"), replacement);
    assert.throws(() => m.getSubmodule("layers.7.proj"), /no submodule "7"/);
    assert.throws(() => m.setSubmodule("layers.0.nothing", replacement), /no submodule "nothing"/);
  });

  it("loadStateDict copies in place, reports missing/unexpected keys and rejects shape mismatches", () => {
    const a = new Tiny(),
      b = new Tiny();
    const embedBefore = b.embed.weight;
    b.loadStateDict(a.stateDict());
    assert.equal(b.embed.weight, embedBefore, "tensors keep their identity (tied weights stay tied)");
    assertClose(
      b.layers.get(1).getTensor("proj.weight").dataSync(),
      a.layers.get(1).getTensor("proj.weight").dataSync(),
      0,
    );
    const partial = new Map(a.stateDict());
    partial.delete("head.weight");
    partial.set("extra.weight", T.zeros([1]));
    assert.throws(
      () => b.loadStateDict(partial),
      /1 missing key\(s\) \[head.weight\] and 1 unexpected key\(s\) \[extra.weight\]/,
    );
    assert.deepEqual(b.loadStateDict(partial, { strict: false }), {
      missingKeys: ["head.weight"],
      unexpectedKeys: ["extra.weight"],
    });
    const wrong = new Map(a.stateDict());
    wrong.set("layers.0.proj.weight", T.zeros([3, 2]));
    assert.throws(
      () => b.loadStateDict(wrong),
      /"layers.0.proj.weight" has shape \[3, 2\] in the state dict but \[2, 3\] in the model/,
    );
  });

  it("train/eval and requiresGrad_ reach every descendant", () => {
    const m = new Tiny();
    m.eval();
    assert.ok(m.modules().every((x) => !x.training));
    m.train();
    assert.ok(m.modules().every((x) => x.training));
    m.requiresGrad_(false);
    assert.equal(m.numParameters(true), 0);
  });
});

describe("initialisation matches PyTorch's defaults", () => {
  it("Linear: weights and bias uniform in ±1/√in with the uniform variance", () => {
    const lin = new nn.Linear(256, 300, { generator: new T.Generator(1) });
    const bound = 1 / 16;
    for (const t of [lin.weight, lin.bias!]) {
      const v = Array.from(t.dataSync());
      assert.ok(v.every((x) => Math.abs(x) <= bound));
      const variance = v.reduce((s, x) => s + x * x, 0) / v.length;
      assert.ok(Math.abs(variance - (bound * bound) / 3) < (0.1 * (bound * bound)) / 3, `variance ${variance}`);
    }
  });

  it("Embedding: N(0, 1), padding row zero; seeded generators reproduce", () => {
    const e = new nn.Embedding(1000, 64, { paddingIdx: 3, generator: new T.Generator(7) });
    const v = Array.from(e.weight.dataSync());
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const std = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
    assert.ok(Math.abs(mean) < 0.01 && Math.abs(std - 1) < 0.01, `mean ${mean} std ${std}`);
    assert.ok(v.slice(3 * 64, 4 * 64).every((x) => x === 0));
    const again = new nn.Embedding(1000, 64, { paddingIdx: 3, generator: new T.Generator(7) });
    assertClose(again.weight.dataSync(), v, 0);
  });
});

describe("layer forwards against hand computation", () => {
  it("Linear and GPT-2 Conv1D compute x·Wᵀ + b and x·W + b", () => {
    const lin = new nn.Linear(2, 3);
    lin.weight.copy_(
      T.tensor([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
    );
    lin.bias!.copy_(T.tensor([0.5, -1, 2]));
    assertClose(
      lin
        .forward(
          T.tensor([
            [1, -1],
            [2, 0.5],
          ]),
        )
        .dataSync(),
      [-0.5, -2, 1, 3.5, 7, 15],
      1e-6,
    );
    const conv = new nn.Conv1D(3, 2);
    conv.weight.copy_(
      T.tensor([
        [1, 3, 5],
        [2, 4, 6],
      ]),
    );
    conv.bias.copy_(T.tensor([0.5, -1, 2]));
    assertClose(
      conv
        .forward(
          T.tensor([
            [
              [1, -1],
              [2, 0.5],
            ],
          ]),
        )
        .dataSync(),
      [-0.5, -2, 1, 3.5, 7, 15],
      1e-6,
    );
  });

  it("LayerNorm and RMSNorm", () => {
    const x = [1, 2, 3, 6];
    const mean = 3,
      variance = (4 + 1 + 0 + 9) / 4;
    const ln = new nn.LayerNorm(4, { eps: 1e-5 });
    ln.weight!.copy_(T.tensor([1, 2, 1, 1]));
    ln.bias!.copy_(T.tensor([0, 0, 1, 0]));
    const expectLn = x.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-5)) * [1, 2, 1, 1][i]! + [0, 0, 1, 0][i]!);
    assertClose(ln.forward(T.tensor([x])).dataSync(), expectLn, 1e-5);
    const rms = new nn.RMSNorm(4, 1e-6);
    const ms = (1 + 4 + 9 + 36) / 4;
    assertClose(
      rms.forward(T.tensor([x])).dataSync(),
      x.map((v) => v / Math.sqrt(ms + 1e-6)),
      1e-5,
    );
  });

  it("Dropout: identity in eval; in train zeros about p of the elements and scales the rest by 1/(1−p)", () => {
    const d = new nn.Dropout(0.25, new T.Generator(3));
    const x = T.ones([10000]);
    d.eval();
    assert.equal(d.forward(x), x);
    d.train();
    const y = d.forward(x).dataSync();
    const zeros = y.filter((v) => v === 0).length;
    assert.ok(Math.abs(zeros / 10000 - 0.25) < 0.02, `zero fraction ${zeros / 10000}`);
    assert.ok(y.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6));
  });

  it("Sequential applies children in order", () => {
    const seq = new nn.Sequential(new nn.Linear(2, 2), nn.ReLU());
    const lin = seq.getSubmodule("0") as nn.Linear;
    lin.weight.copy_(
      T.tensor([
        [1, 0],
        [0, -1],
      ]),
    );
    lin.bias!.copy_(T.tensor([0, 0]));
    assertClose(seq.forward(T.tensor([[3, 4]])).dataSync(), [3, 0], 0);
    assert.throws(() => nn.activation("swishy"), /unknown activation "swishy"/);
  });
});

/** A plain-JS LSTM written from the equations, independent of the engine. */
function referenceLstmStep(
  x: number[],
  h: number[],
  c: number[],
  wIh: number[][],
  wHh: number[][],
  bIh: number[],
  bHh: number[],
) {
  const H = h.length;
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const gate = (k: number) =>
    Array.from({ length: H }, (_, j) => {
      const row = k * H + j;
      return (
        bIh[row]! +
        bHh[row]! +
        x.reduce((s, xv, q) => s + xv * wIh[row]![q]!, 0) +
        h.reduce((s, hv, q) => s + hv * wHh[row]![q]!, 0)
      );
    });
  const [i, f, g, o] = [gate(0).map(sig), gate(1).map(sig), gate(2).map(Math.tanh), gate(3).map(sig)];
  const cNew = c.map((cv, j) => f[j]! * cv + i[j]! * g[j]!);
  const hNew = cNew.map((cv, j) => o[j]! * Math.tanh(cv));
  return { h: hNew, c: cNew };
}

describe("LSTM", () => {
  it("matches the LSTM equations step by step (bidirectional, batch-first, PyTorch names)", () => {
    const lstm = new nn.LSTM(3, 2, { batchFirst: true, bidirectional: true, generator: new T.Generator(11) });
    assert.deepEqual(
      lstm.namedParameters().map(([n, p]) => `${n}:${p.shape.join("x")}`),
      [
        "weight_ih_l0:8x3",
        "weight_hh_l0:8x2",
        "bias_ih_l0:8",
        "bias_hh_l0:8",
        "weight_ih_l0_reverse:8x3",
        "weight_hh_l0_reverse:8x2",
        "bias_ih_l0_reverse:8",
        "bias_hh_l0_reverse:8",
      ],
    );
    const xs = [randValues(3, 1), randValues(3, 2), randValues(3, 3)];
    const { output, hN } = lstm.forward(T.tensor([xs]));
    const mat = (name: string, cols: number) => {
      const v = Array.from(lstm.getTensor(name).dataSync());
      return cols === 0 ? v : Array.from({ length: v.length / cols }, (_, r) => v.slice(r * cols, (r + 1) * cols));
    };
    const run = (sfx: string, order: number[]) => {
      let h = [0, 0],
        c = [0, 0];
      const outs: number[][] = [];
      for (const t of order) {
        ({ h, c } = referenceLstmStep(
          xs[t]!,
          h,
          c,
          mat(`weight_ih_l0${sfx}`, 3) as number[][],
          mat(`weight_hh_l0${sfx}`, 2) as number[][],
          mat(`bias_ih_l0${sfx}`, 0) as number[],
          mat(`bias_hh_l0${sfx}`, 0) as number[],
        ));
        outs[t] = h;
      }
      return { outs, h };
    };
    const fwd = run("", [0, 1, 2]),
      bwd = run("_reverse", [2, 1, 0]);
    const expected = [0, 1, 2].flatMap((t) => [...fwd.outs[t]!, ...bwd.outs[t]!]);
    assertClose(output.dataSync(), expected, 1e-6, 1e-5);
    assertClose(hN.dataSync(), [...fwd.h, ...bwd.h], 1e-6, 1e-5);
  });

  it("gradients through two layers agree with finite differences", () => {
    const lstm = new nn.LSTM(2, 3, { numLayers: 2, generator: new T.Generator(2) });
    gradCheck((x) => lstm.forward(x).output, [randTensor([3, 2, 2], 5)]);
  });
});
