/** Every differentiable op's gradient against central finite differences (see helpers.gradCheck for tolerances). */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as T from "../src/tensor/index.js";
import { gradCheck, randTensor } from "./helpers.js";

const ids = () => T.tensor(new Int32Array([2, 0, 3, 2, 1]), [5]);

describe("gradients agree with finite differences", () => {
  describe("element-wise binary ops with broadcasting", () => {
    const a = () => randTensor([2, 3, 4], 1);
    const b = () => randTensor([3, 1], 2);
    it("add", () => gradCheck(T.add, [a(), b()]));
    it("sub", () => gradCheck(T.sub, [a(), b()]));
    it("mul", () => gradCheck(T.mul, [a(), b()]));
    it("div", () => gradCheck(T.div, [a(), randTensor([4], 3, 0.5, 1.5)]));
    it("pow with a tensor exponent", () =>
      gradCheck((a, b) => T.pow(T.abs(a), b), [randTensor([3, 4], 4, 0.5, 1.5), randTensor([4], 5)]));
    it("pow with a number exponent", () => gradCheck((x) => T.pow(x, 3), [a()]));
    it("number operands", () => gradCheck((x) => T.div(T.sub(2, T.mul(x, 3)), 1.5), [a()]));
    it("maximum and minimum", () => {
      gradCheck(T.maximum, [randTensor([3, 4], 6), randTensor([3, 4], 7)]);
      gradCheck(T.minimum, [randTensor([3, 4], 8), randTensor([4], 9)]);
    });
  });

  describe("element-wise unary ops", () => {
    const x = () => randTensor([3, 5], 11, 0.1, 2);
    const positive = () => randTensor([3, 5], 12, 0.3, 2).dataSync().map(Math.abs);
    const pos = () => T.tensor(positive(), [3, 5]);
    const cases: [string, (t: T.Tensor) => T.Tensor, () => T.Tensor][] = [
      ["neg", T.neg, x],
      ["exp", T.exp, x],
      ["log", T.log, pos],
      ["sqrt", T.sqrt, pos],
      ["rsqrt", T.rsqrt, pos],
      ["abs", T.abs, x],
      ["square", T.square, x],
      ["sin", T.sin, x],
      ["cos", T.cos, x],
      ["tanh", T.tanh, x],
      ["sigmoid", T.sigmoid, x],
      ["relu", T.relu, x],
      ["gelu", T.gelu, x],
      ["geluTanh", T.geluTanh, x],
      ["silu", T.silu, x],
    ];
    for (const [name, f, input] of cases) it(name, () => gradCheck(f, [input()]));
  });

  describe("selection and masking", () => {
    it("where", () => {
      const cond = T.tensor([1, 0, 0, 1, 1, 0], [2, 3]);
      gradCheck((a, b) => T.where(cond, a, b), [randTensor([2, 3], 21), randTensor([3], 22)]);
    });
    it("maskedFill", () => gradCheck((a) => T.maskedFill(a, T.tensor([0, 1, 0], [3]), -5), [randTensor([2, 3], 23)]));
  });

  describe("shape ops", () => {
    const x = () => randTensor([2, 3, 4], 31);
    it("reshape", () => gradCheck((t) => T.mul(T.reshape(t, [4, -1]), T.tensor([1, 2, 3, 4, 5, 6], [6])), [x()]));
    it("permute (non-contiguous result fed to another op)", () =>
      gradCheck((t) => T.mul(T.permute(t, [2, 0, 1]), randTensor([4, 2, 3], 32)), [x()]));
    it("transpose then contiguous", () => gradCheck((t) => T.contiguous(T.transpose(t, 0, 2)), [x()]));
    it("expand", () =>
      gradCheck((t) => T.mul(T.expand(t, [2, 3, 4]), randTensor([2, 3, 4], 33)), [randTensor([3, 1], 34)]));
    it("narrow and select", () => {
      gradCheck((t) => T.narrow(t, 2, 1, 2), [x()]);
      gradCheck((t) => T.select(t, 1, 2), [x()]);
    });
    it("unsqueeze and squeeze", () => gradCheck((t) => T.squeeze(T.unsqueeze(t, 1), 1), [x()]));
    it("indexSelect with repeated ids", () =>
      gradCheck((t) => T.indexSelect(t, 1, T.tensor(new Int32Array([2, 0, 2]), [3])), [x()]));
    it("cat", () => gradCheck((a, b) => T.cat([a, b, a], 1), [randTensor([2, 2, 3], 35), randTensor([2, 1, 3], 36)]));
    it("split and chunk", () => {
      gradCheck(
        (t) => {
          const [p, q] = T.split(t, [1, 3], 2);
          return T.mul(p!, T.sum(q!, -1, true));
        },
        [x()],
      );
      gradCheck(
        (t) => {
          const [p, q] = T.chunk(t, 2, 2);
          return T.sub(p!, T.mul(q!, 2));
        },
        [x()],
      );
    });
  });

  describe("reductions", () => {
    const x = () => randTensor([2, 3, 4], 41);
    it("sum over all, one and several axes", () => {
      gradCheck((t) => T.sum(t), [x()]);
      gradCheck((t) => T.sum(t, 1), [x()]);
      gradCheck((t) => T.sum(t, [0, 2], true), [x()]);
    });
    it("mean", () => gradCheck((t) => T.mean(t, -1), [x()]));
    it("max along an axis", () => gradCheck((t) => T.max(t, 1).values, [x()]));
  });

  describe("matrix products", () => {
    it("matmul 2-D", () => gradCheck(T.matmul, [randTensor([3, 4], 51), randTensor([4, 5], 52)]));
    it("matmul with transposed views", () =>
      gradCheck((a, b) => T.matmul(T.transpose(a), T.transpose(b)), [randTensor([4, 3], 53), randTensor([5, 4], 54)]));
    it("batched matmul with a broadcast batch", () =>
      gradCheck(T.matmul, [randTensor([2, 3, 4], 55), randTensor([4, 2], 56)]));
    it("matmul with an empty inner or outer dimension", () => {
      assert.deepEqual(T.matmul(T.zeros([2, 0]), T.zeros([0, 3])).toArray(), [
        [0, 0, 0],
        [0, 0, 0],
      ]);
      assert.deepEqual(T.matmul(T.zeros([0, 4]), randTensor([4, 3], 60)).shape, [0, 3]);
      gradCheck(
        (a, b) => T.add(T.matmul(T.narrow(a, 1, 0, 0), T.narrow(b, 0, 0, 0)), T.sum(a)),
        [randTensor([2, 3], 61), randTensor([4, 2], 62)],
      );
    });
    it("linear with bias", () =>
      gradCheck(T.linear, [randTensor([2, 3, 4], 57), randTensor([5, 4], 58), randTensor([5], 59)]));
  });

  describe("neural-network functions", () => {
    it("softmax and logSoftmax on the last and a middle axis", () => {
      gradCheck((t) => T.softmax(t), [randTensor([3, 5], 61)]);
      gradCheck((t) => T.logSoftmax(t), [randTensor([3, 5], 62)]);
      gradCheck((t) => T.softmax(t, 1), [randTensor([2, 3, 4], 63)]);
    });
    it("layerNorm with and without affine parameters", () => {
      gradCheck(
        (x, w, b) => T.layerNorm(x, w, b, 1e-5),
        [randTensor([3, 6], 64), randTensor([6], 65), randTensor([6], 66)],
      );
      gradCheck((x) => T.layerNorm(x, null, null), [randTensor([2, 5], 67)]);
    });
    it("rmsNorm", () => gradCheck((x, w) => T.rmsNorm(x, w, 1e-6), [randTensor([3, 6], 68), randTensor([6], 69)]));
    it("embedding", () => gradCheck((table) => T.embedding(ids(), table), [randTensor([4, 3], 70)]));
    it("crossEntropy with ignored targets (mean, sum, none)", () => {
      const targets = T.tensor(new Int32Array([1, -100, 3, 0]), [4]);
      gradCheck((l) => T.crossEntropy(l, targets), [randTensor([4, 5], 71)]);
      gradCheck((l) => T.crossEntropy(l, targets, { reduction: "sum" }), [randTensor([4, 5], 72)]);
      gradCheck((l) => T.crossEntropy(l, targets, { reduction: "none" }), [randTensor([4, 5], 73)]);
    });
    it("dropout with a fixed mask", () =>
      gradCheck((x) => T.dropout(x, 0.3, true, new T.Generator(5)), [randTensor([4, 6], 74)]));
    it("scaled dot-product attention with a causal mask", () => {
      const mask = T.causalMask(3, 3);
      gradCheck(
        (q, k, v) => T.scaledDotProductAttention(q, k, v, mask),
        [randTensor([2, 3, 4], 75), randTensor([2, 3, 4], 76), randTensor([2, 3, 4], 77)],
      );
    });
    it("rotary embedding", () =>
      gradCheck((x) => T.applyRotary(x, randTensor([3, 4], 78), randTensor([3, 4], 79)), [randTensor([2, 3, 4], 80)]));
    it("rotary embedding of a head-split view, broadcast over heads", () => {
      const cos = randTensor([2, 1, 3, 4], 81),
        sin = randTensor([2, 1, 3, 4], 82);
      gradCheck(
        (x) => T.applyRotary(T.transpose(T.reshape(x, [2, 3, 2, 4]), 1, 2), cos, sin),
        [randTensor([2, 3, 8], 83)],
      );
    });
  });

  describe("fused ops", () => {
    it("addmm: x·W + b with a transposed weight view, and without bias", () => {
      gradCheck(
        (x, w, b) => T.addmm(x, T.transpose(w), b),
        [randTensor([2, 3, 4], 90), randTensor([5, 4], 91), randTensor([5], 92)],
      );
      gradCheck((x, w) => T.addmm(x, w), [randTensor([3, 4], 93), randTensor([4, 2], 94)]);
    });
    it("attention: causal mask, heads split from one projection (strided q/k/v views), scale", () => {
      // q, k, v are slices of one [B, T, 3·H·D] tensor, split into heads without copies, as GPT-2 does.
      const mask = T.reshape(T.causalMask(3, 3), [1, 1, 3, 3]);
      gradCheck(
        (qkv) => {
          const [q, k, v] = T.split(qkv, [4, 4, 4], 2).map((t) => T.transpose(T.reshape(t, [2, 3, 2, 2]), 1, 2));
          return T.attention(q!, k!, v!, { mask, scale: 0.7 });
        },
        [randTensor([2, 3, 12], 95)],
      );
    });
    it(
      "attention: grouped-query heads (4 query heads on 2 key/value heads), padding mask, " + "queries after a cache",
      () => {
        const pad = T.tensor([0, 0, 0, 0, 0, -1e9, 0, 0, 0, 0], [2, 1, 1, 5]);
        gradCheck(
          (q, k, v) => T.attention(q, k, v, { mask: pad }),
          [randTensor([2, 4, 2, 3], 96), randTensor([2, 2, 5, 3], 97), randTensor([2, 2, 5, 2], 98)],
        );
      },
    );
    it("attention with dropout (a fixed mask from a seeded generator)", () => {
      gradCheck(
        (q, k, v) => T.attention(q, k, v, { dropoutP: 0.3, training: true, generator: new T.Generator(11) }),
        [randTensor([1, 2, 3, 4], 99), randTensor([1, 2, 3, 4], 100), randTensor([1, 2, 3, 4], 101)],
      );
    });
    it("the pieces of a split meet in one gradient (slices accumulated in place), also when used twice", () => {
      gradCheck(
        (t) => {
          const [a, b, c] = T.split(t, [1, 2, 1], 1);
          return T.cat([T.mul(a!, b!), T.mul(T.exp(c!), a!), T.narrow(t, 1, 1, 2)], 1);
        },
        [randTensor([3, 4, 2], 102)],
      );
    });
    it("reshape of strided views stays a view where possible", () => {
      const base = randTensor([2, 3, 12], 103);
      const sliced = T.narrow(base, 2, 4, 4); // [2, 3, 4] with row stride 12
      const heads = T.reshape(sliced, [2, 3, 2, 2]); // splits the contiguous last axis: a view
      assert.deepEqual([...heads.strides], [36, 12, 2, 1]);
      const merged = T.reshape(T.transpose(heads, 1, 2), [2, 2, 6]); // merges non-adjacent axes: a copy
      assert.deepEqual([...merged.strides], [12, 6, 1]);
      assert.deepEqual(
        Array.from(merged.dataSync()),
        Array.from(T.contiguous(T.reshape(T.contiguous(T.transpose(heads, 1, 2)), [2, 2, 6]), true).dataSync()),
      );
      gradCheck((t) => T.mul(T.reshape(T.narrow(t, 2, 4, 4), [2, 3, 2, 2]), 2), [base]);
    });
  });
});

describe("contiguous views at an offset", () => {
  // narrow of a [1, 1, n] tensor is contiguous but starts inside its storage; kernels that take a bare storage
  // (cat, indexSelect, softmax, norms, cross-entropy) must see its own values, not the storage's first ones.
  const x = T.tensor([0, 1, 2, 3, 4, 5], [1, 1, 6]);
  const k = T.narrow(x, 2, 3, 3);
  it("cat, indexSelect, reshape and softmax read the view's values", () => {
    assert.deepEqual(Array.from(T.cat([k, k], 2).dataSync()), [3, 4, 5, 3, 4, 5]);
    assert.deepEqual(Array.from(T.indexSelect(k, 2, T.tensor(new Int32Array([2, 0]), [2])).dataSync()), [5, 3]);
    assert.deepEqual(Array.from(T.reshape(k, [3]).dataSync()), [3, 4, 5]);
    const s = Array.from(T.softmax(T.mul(k, k)).dataSync());
    const e = [9, 16, 25].map((v) => Math.exp(v - 25)),
      z = e.reduce((a, b) => a + b);
    s.forEach((v, i) => {
      assert.ok(Math.abs(v - e[i]! / z) < 1e-6);
    });
    gradCheck((t) => T.cat([T.narrow(t, 2, 3, 3), T.narrow(t, 2, 0, 2)], 2), [randTensor([1, 1, 6], 81)]);
  });
});
