/**
 * optim: AdamW and SGD against PyTorch's update formulas evaluated in doubles, parameter groups, frozen
 * parameters, state dicts, gradient clipping, the HF learning-rate schedules, and an MLP that learns XOR.
 *
 * Tolerances: the kernels store float32 values. For O(1) parameters an update rounds each stored quantity once
 * (relative error ≤ 6e-8), and a step's error is at most a few such roundings of p plus lr times a few roundings
 * of the O(1) Adam direction m̂/(√v̂ + eps). Over 3 steps with lr ≤ 0.1 that stays below ~5e-7, so atol 2e-6 is
 * tight enough to catch a wrong formula (a missing bias correction or coupled decay changes values by ≥ 1e-3).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as T from "../src/tensor/index.js";
import { AdamW, SGD, clipGradNorm, getScheduler, LRScheduler } from "../src/optim/index.js";
import type { Optimizer, OptimizerStateDict } from "../src/optim/index.js";
import { assertClose, randValues } from "./helpers.js";

const ATOL = 2e-6;

/** A trainable parameter with the given values. */
function param(values: number[], shape = [values.length]): T.Tensor {
  return T.parameter(T.tensor(values, shape));
}

/** Set p.grad to a kept tensor with the given values (what backward would leave). */
function setGrad(p: T.Tensor, values: number[]): void {
  p.grad?.dispose();
  p.grad = T.keep(T.tensor(values, p.shape));
}

const P0 = [0.5, -1.2, 2.0, 0.1];
const GRADS = [
  [0.3, -0.7, 1.1, -0.05],
  [-0.2, -0.4, 0.9, 0.3],
  [0.25, 0.6, -1.3, 0.15],
];

/** torch.optim.AdamW's update for a flat parameter, in doubles. */
function adamwReference(
  p0: number[],
  grads: number[][],
  lr: number,
  wd: number,
  b1 = 0.9,
  b2 = 0.999,
  eps = 1e-8,
): number[] {
  const p = [...p0],
    m = p0.map(() => 0),
    v = p0.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      p[i]! *= 1 - lr * wd;
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
      const mHat = m[i]! / (1 - b1 ** t);
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - b2 ** t) + eps;
      p[i]! -= (lr * mHat) / denom;
    }
  });
  return p;
}

/** torch.optim.SGD's update for a flat parameter, in doubles. */
function sgdReference(
  p0: number[],
  grads: number[][],
  o: { lr: number; momentum: number; dampening: number; wd: number; nesterov: boolean },
): number[] {
  const p = [...p0];
  let buf: number[] | null = null;
  for (const g of grads) {
    let d = g.map((gi, i) => gi + o.wd * p[i]!);
    if (o.momentum !== 0) {
      buf = buf === null ? [...d] : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * d[i]!);
      const bb: number[] = buf;
      d = o.nesterov ? d.map((di, i) => di + o.momentum * bb[i]!) : [...bb];
    }
    for (let i = 0; i < p.length; i++) p[i]! -= o.lr * d[i]!;
  }
  return p;
}

function run(opt: Optimizer, p: T.Tensor, grads: number[][]): void {
  for (const g of grads) {
    setGrad(p, g);
    opt.step();
  }
}

// First in the file: tensors that earlier tests drop without dispose() are counted live until the garbage
// collector finalises them, which could happen mid-loop and make the leak check below see fewer storages.
describe("training", () => {
  it("a small MLP learns XOR with AdamW, and 200 steps leak no storage", (t) => {
    const hidden = 8;
    const w1 = T.parameter(T.tensor(randValues(hidden * 2, 11, 0.5, 1.5), [hidden, 2]));
    const b1 = T.parameter(T.zeros([hidden]));
    const w2 = T.parameter(T.tensor(randValues(2 * hidden, 12, 0.2, 0.8), [2, hidden]));
    const b2 = T.parameter(T.zeros([2]));
    const x = T.tensor([
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ]);
    const y = T.tensor(new Int32Array([0, 1, 1, 0]));
    const opt = new AdamW([w1, b1, w2, b2], { lr: 0.05, weightDecay: 0 });
    const trainStep = () =>
      T.tidy(() => {
        const logits = T.linear(T.tanh(T.linear(x, w1, b1)), w2, b2);
        const loss = T.crossEntropy(logits, y);
        loss.backward();
        clipGradNorm([w1, b1, w2, b2], 5);
        opt.step();
        opt.zeroGrad();
        return loss.item();
      });
    const first = trainStep();
    const liveAfterFirst = T.memory().liveStorages;
    let last = first;
    for (let i = 1; i < 200; i++) last = trainStep();
    assert.ok(first > 0.5, `initial loss ${first} should be near ln 2`);
    assert.ok(last < 0.05, `final loss ${last} should be < 0.05`);
    t.diagnostic(`XOR: loss ${first.toFixed(4)} → ${last.toFixed(5)} after 200 AdamW steps`);
    assert.equal(T.memory().liveStorages, liveAfterFirst, "live storages after 200 steps equal those after the first");
    const pred = T.tidy(() => T.argmax(T.linear(T.tanh(T.linear(x, w1, b1)), w2, b2), 1).dataSync());
    assert.deepEqual(Array.from(pred), [0, 1, 1, 0]);
  });
});

describe("AdamW", () => {
  it("uses PyTorch's defaults", () => {
    const opt = new AdamW([param([1])]);
    assert.deepEqual(
      { ...opt.paramGroups[0], params: undefined },
      { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, params: undefined },
    );
  });

  it("first step moves each weight by lr against the sign of its gradient (after decay)", () => {
    const p = param(P0, [2, 2]);
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.1 });
    run(opt, p, GRADS.slice(0, 1));
    // Step 1: m̂ = g and √v̂ = |g|, so the Adam direction is g/(|g| + eps) ≈ sign(g).
    const expected = P0.map((x, i) => x * (1 - 0.1 * 0.1) - (0.1 * GRADS[0]![i]!) / (Math.abs(GRADS[0]![i]!) + 1e-8));
    assertClose(p.dataSync(), expected, ATOL);
  });

  it("matches torch.optim.AdamW over 3 steps, with and without weight decay", () => {
    // The large-eps case checks that eps is added outside the square root, after bias correction.
    const configs = [
      { weightDecay: 0, betas: [0.9, 0.999] as const, eps: 1e-8 },
      { weightDecay: 0.1, betas: [0.9, 0.999] as const, eps: 1e-8 },
      { weightDecay: 0.1, betas: [0.5, 0.9] as const, eps: 0.1 },
    ];
    for (const c of configs) {
      const p = param(P0, [2, 2]);
      const opt = new AdamW([p], { lr: 0.1, ...c });
      run(opt, p, GRADS);
      assertClose(
        p.dataSync(),
        adamwReference(P0, GRADS, 0.1, c.weightDecay, ...c.betas, c.eps),
        ATOL,
        0,
        `AdamW ${JSON.stringify(c)}`,
      );
      assert.equal(opt.getState(p)!["step"], 3);
    }
  });

  it("decays weights decoupled from the gradient: zero gradients shrink p by (1 − lr·wd) per step", () => {
    const p = param(P0);
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.1 });
    run(
      opt,
      p,
      [0, 0, 0].map(() => [0, 0, 0, 0]),
    );
    // With L2 (coupled) decay the gradient would be wd·p and Adam would move each weight by ≈ lr per step instead.
    assertClose(
      p.dataSync(),
      P0.map((x) => x * 0.99 ** 3),
      ATOL,
    );
  });

  it("parameter groups get their own lr and weight decay, other options from the defaults", () => {
    const a = param(P0),
      b = param(P0.map((x) => -x));
    const opt = new AdamW(
      [
        { params: [a], lr: 0.1, weightDecay: 0 },
        { params: [b], weightDecay: 0.5 },
      ],
      { lr: 0.01, betas: [0.8, 0.99] },
    );
    assert.equal(opt.paramGroups[1]!.lr, 0.01);
    assert.deepEqual(opt.paramGroups[0]!.betas, [0.8, 0.99]);
    for (const g of GRADS) {
      setGrad(a, g);
      setGrad(b, g);
      opt.step();
    }
    assertClose(a.dataSync(), adamwReference(P0, GRADS, 0.1, 0, 0.8, 0.99), ATOL, 0, "group 0");
    assertClose(
      b.dataSync(),
      adamwReference(
        P0.map((x) => -x),
        GRADS,
        0.01,
        0.5,
        0.8,
        0.99,
      ),
      ATOL,
      0,
      "group 1",
    );
    assert.throws(() => new AdamW([{ params: [a] }, { params: [a] }]), /more than one parameter group/);
  });

  it("frozen parameters and parameters without a gradient are not updated and get no state", () => {
    const trained = param([1, 2]),
      frozen = T.parameter(T.tensor([3, 4])).requiresGrad_(false),
      unused = param([5, 6]);
    const opt = new AdamW([trained, frozen, unused], { lr: 0.1, weightDecay: 0.1 });
    for (let i = 0; i < 3; i++) {
      T.tidy(() => {
        const x = T.tensor([0.5, -1]);
        T.add(T.sum(T.mul(trained, x)), T.sum(T.mul(frozen, x))).backward();
      });
      assert.equal(frozen.grad, null);
      assert.equal(unused.grad, null);
      opt.step();
      opt.zeroGrad();
    }
    assert.deepEqual(Array.from(frozen.dataSync()), [3, 4]);
    assert.deepEqual(Array.from(unused.dataSync()), [5, 6], "weight decay is not applied without a gradient either");
    assert.equal(opt.getState(frozen), undefined);
    assert.equal(opt.getState(unused), undefined);
    assert.equal(opt.stateSize, 1);
    assert.deepEqual(Object.keys(opt.stateDict().state), ["0"]);
    assertClose(
      trained.dataSync(),
      adamwReference(
        [1, 2],
        [
          [0.5, -1],
          [0.5, -1],
          [0.5, -1],
        ],
        0.1,
        0.1,
      ),
      ATOL,
    );
  });

  it("state tensors survive the tidy scope the first step runs in", () => {
    const p = param(P0);
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0 });
    T.tidy(() => run(opt, p, GRADS.slice(0, 1)));
    assert.equal((opt.getState(p)!["expAvg"] as T.Tensor).isDisposed, false);
    run(opt, p, GRADS.slice(1));
    assertClose(p.dataSync(), adamwReference(P0, GRADS, 0.1, 0), ATOL);
  });
});

describe("SGD", () => {
  const cases = [
    { lr: 0.1, momentum: 0, dampening: 0, wd: 0, nesterov: false },
    { lr: 0.1, momentum: 0.9, dampening: 0.1, wd: 0.01, nesterov: false },
    { lr: 0.05, momentum: 0.9, dampening: 0, wd: 0.1, nesterov: true },
  ];
  for (const c of cases) {
    it(
      `matches torch.optim.SGD over 3 steps (momentum ${c.momentum}, dampening ${c.dampening}, ` +
        `wd ${c.wd}, nesterov ${c.nesterov})`,
      () => {
        const p = param(P0, [2, 2]);
        const opt = new SGD([p], {
          lr: c.lr,
          momentum: c.momentum,
          dampening: c.dampening,
          weightDecay: c.wd,
          nesterov: c.nesterov,
        });
        run(opt, p, GRADS);
        assertClose(p.dataSync(), sgdReference(P0, GRADS, c), ATOL);
      },
    );
  }

  it("rejects Nesterov without momentum or with dampening", () => {
    assert.throws(
      () => new SGD([param([1])], { nesterov: true }),
      /Nesterov momentum requires a momentum and zero dampening/,
    );
    assert.throws(() => new SGD([param([1])], { nesterov: true, momentum: 0.9, dampening: 0.1 }), /zero dampening/);
  });
});

describe("Optimizer bookkeeping", () => {
  it("zeroGrad sets gradients to null and frees them; zeroGrad(false) zeroes them in place", () => {
    const a = param([1, 2]),
      b = param([3]);
    const opt = new SGD([a, b], { lr: 0.1 });
    T.tidy(() => T.add(T.sum(T.square(a)), T.sum(b)).backward());
    assert.ok(a.grad && b.grad);
    const before = T.memory().liveStorages;
    const ga = a.grad;
    opt.zeroGrad(false);
    assert.equal(a.grad, ga);
    assert.deepEqual(Array.from(a.grad!.dataSync()), [0, 0]);
    opt.zeroGrad();
    assert.equal(a.grad, null);
    assert.equal(b.grad, null);
    assert.equal(ga.isDisposed, true);
    assert.equal(T.memory().liveStorages, before - 2);
  });

  for (const make of [
    (ps: T.Tensor[]) => new AdamW(ps, { lr: 0.1, weightDecay: 0.05 }),
    (ps: T.Tensor[]) => new SGD(ps, { lr: 0.1, momentum: 0.9 }),
  ]) {
    it(
      `${make([param([0])]).constructor.name}: stateDict → JSON → loadStateDict continues ` +
        `exactly like the original`,
      () => {
        const a1 = param(P0, [2, 2]),
          b1 = param([0.3, -0.3]),
          frozen = param([9]).requiresGrad_(false);
        const opt1 = make([a1, frozen, b1]);
        const gradsB = [
          [0.1, 0.2],
          [0.3, -0.1],
          [-0.2, 0.5],
          [0.05, 0.05],
        ];
        const stepBoth = (opt: Optimizer, a: T.Tensor, b: T.Tensor, k: number) => {
          setGrad(a, GRADS[k % 3]!);
          setGrad(b, gradsB[k]!);
          opt.step();
        };
        stepBoth(opt1, a1, b1, 0);
        stepBoth(opt1, a1, b1, 1);
        opt1.paramGroups[0]!.lr = 0.05; // what a scheduler does between steps
        const json = JSON.stringify(opt1.stateDict(), (_k, v) => (v instanceof Float32Array ? Array.from(v) : v));
        const sd = JSON.parse(json) as OptimizerStateDict;
        assert.deepEqual(sd.paramGroups[0]!.params, [0, 1, 2]);
        assert.deepEqual(Object.keys(sd.state), ["0", "2"], "the frozen parameter (index 1) has no state");

        const a2 = param(Array.from(a1.dataSync()), [2, 2]),
          b2 = param(Array.from(b1.dataSync()));
        const opt2 = make([a2, param([9]).requiresGrad_(false), b2]);
        opt2.loadStateDict(sd);
        assert.equal(opt2.paramGroups[0]!.lr, 0.05);
        for (const k of [2, 3]) {
          stepBoth(opt1, a1, b1, k);
          stepBoth(opt2, a2, b2, k);
        }
        assert.deepEqual(Array.from(a2.dataSync()), Array.from(a1.dataSync()));
        assert.deepEqual(Array.from(b2.dataSync()), Array.from(b1.dataSync()));
        assert.deepEqual(opt2.stateDict(), opt1.stateDict());
      },
    );
  }

  it("loadStateDict rejects a different group structure", () => {
    const opt = new AdamW([param([1, 2])]);
    const sd = opt.stateDict();
    assert.throws(
      () => new AdamW([param([1]), param([2])]).loadStateDict(sd),
      /group 0 has 1 parameters, the optimizer's has 2/,
    );
    setGrad(opt.paramGroups[0]!.params[0]!, [1, 1]);
    opt.step();
    assert.throws(
      () => new AdamW([param([1, 2, 3])]).loadStateDict(opt.stateDict()),
      /has 2 values, the parameter has 3/,
    );
  });
});

describe("clipGradNorm", () => {
  it("returns the joint 2-norm and scales every gradient by maxNorm/(norm + 1e-6) when it is larger", () => {
    const a = param([0, 0]),
      b = param([0, 0, 0, 0], [2, 2]),
      noGrad = param([7]);
    setGrad(a, [3, 4]);
    setGrad(b, [1, 2, 2, 0]);
    const total = Math.sqrt(9 + 16 + 1 + 4 + 4);
    assertClose([clipGradNorm([a, b, noGrad], 10)], [total], 1e-6);
    assertClose(a.grad!.dataSync(), [3, 4], 0, 0, "no clipping below maxNorm");
    assertClose([clipGradNorm([a, b, noGrad], 1)], [total], 1e-6);
    const c = 1 / (total + 1e-6);
    assertClose(a.grad!.dataSync(), [3 * c, 4 * c], 1e-7);
    assertClose(b.grad!.dataSync(), [1 * c, 2 * c, 2 * c, 0], 1e-7);
    assert.equal(noGrad.grad, null);
  });

  it("supports the 1-norm and the max norm", () => {
    const a = param([0, 0]),
      b = param([0, 0]);
    setGrad(a, [3, -4]);
    setGrad(b, [1, -2]);
    assertClose([clipGradNorm([a, b], 100, 1)], [10], 1e-6);
    assertClose([clipGradNorm([a, b], 2, Infinity)], [4], 1e-6);
    assertClose(a.grad!.dataSync(), [(3 * 2) / (4 + 1e-6), (-4 * 2) / (4 + 1e-6)], 1e-6);
    assert.equal(clipGradNorm([param([1])], 1), 0, "no gradients: norm 0");
  });
});

describe("LR schedules (HF transformers get_scheduler)", () => {
  /** lr after 0, 1, …, n−1 scheduler steps (index 0 = right after construction). */
  function lrs(name: string, n: number, opts: Parameters<typeof getScheduler>[2], lr = 0.1): number[] {
    const opt = new SGD([param([1])], { lr });
    const sched = getScheduler(name, opt, opts);
    const out: number[] = [];
    for (let s = 0; s < n; s++) {
      if (s > 0) sched.step();
      assert.equal(opt.paramGroups[0]!.lr, sched.getLastLr()[0]);
      out.push(opt.paramGroups[0]!.lr / lr);
    }
    return out;
  }

  it("linear: warmup 2, total 10", () => {
    assertClose(
      lrs("linear", 12, { numWarmupSteps: 2, numTrainingSteps: 10 }),
      [0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0, 0],
      1e-12,
    );
  });

  it("cosine: warmup 2, total 10 (half cosine from 1 to 0)", () => {
    const got = lrs("cosine", 11, { numWarmupSteps: 2, numTrainingSteps: 10 });
    // progress p = (s − 2)/8, factor ½(1 + cos πp): p = 1/8 → 0.9619397662556434, 1/4 → 0.8535533905932737, …
    const expected = [
      0, 0.5, 1, 0.9619397662556434, 0.8535533905932737, 0.6913417161825449, 0.5, 0.3086582838174551,
      0.14644660940672627, 0.038060233744356624, 0,
    ];
    assertClose(got, expected, 1e-12);
  });

  it("constant and constant_with_warmup", () => {
    assertClose(lrs("constant", 4, {}), [1, 1, 1, 1], 0);
    assertClose(lrs("constant_with_warmup", 7, { numWarmupSteps: 4 }), [0, 0.25, 0.5, 0.75, 1, 1, 1], 1e-12);
  });

  it("cosine_with_min_lr decays to the floor, given as a rate or as an absolute lr", () => {
    // factor ½(1 + cos πp)·(1 − 0.1) + 0.1 with p = s/4
    const expected = [1, 0.5 * (1 + Math.SQRT1_2) * 0.9 + 0.1, 0.55, 0.5 * (1 - Math.SQRT1_2) * 0.9 + 0.1, 0.1];
    assertClose(lrs("cosine_with_min_lr", 5, { numTrainingSteps: 4, minLrRate: 0.1 }), expected, 1e-12);
    assertClose(lrs("cosine_with_min_lr", 5, { numTrainingSteps: 4, minLr: 0.01 }, 0.1), expected, 1e-12);
  });

  it("cosine_with_restarts, polynomial and inverse_sqrt", () => {
    const restarts = lrs("cosine_with_restarts", 11, { numTrainingSteps: 10, numCycles: 2 });
    assertClose(
      [restarts[0]!, restarts[3]!, restarts[5]!, restarts[10]!],
      [1, 0.5 * (1 + Math.cos(0.6 * Math.PI)), 1, 0],
      1e-12,
    );
    const poly = lrs("polynomial", 13, { numTrainingSteps: 10, lrEnd: 0.01, power: 2 });
    assertClose([poly[5]!, poly[10]!, poly[12]!], [(0.09 * 0.25 + 0.01) / 0.1, 0.1, 0.1], 1e-12);
    const isq = lrs("inverse_sqrt", 17, { numWarmupSteps: 4 });
    assertClose([isq[2]!, isq[4]!, isq[16]!], [0.5, 1, 0.5], 1e-12);
  });

  it("gives clear errors for unknown names and missing arguments", () => {
    const opt = new SGD([param([1])], { lr: 0.1 });
    assert.throws(
      () => getScheduler("cosine_annealing", opt, {}),
      /unknown lr scheduler "cosine_annealing"; supported: linear, cosine/,
    );
    assert.throws(() => getScheduler("linear", opt, { numWarmupSteps: 2 }), /linear requires numTrainingSteps/);
    assert.throws(
      () => getScheduler("cosine_with_min_lr", opt, { numTrainingSteps: 4 }),
      /exactly one of minLr or minLrRate/,
    );
  });

  it("scales every group's own initial lr, and resumes from a state dict", () => {
    const make = () =>
      new SGD([
        { params: [param([1])], lr: 0.1 },
        { params: [param([1])], lr: 0.01 },
      ]);
    const opt = make();
    const sched = getScheduler("linear", opt, { numWarmupSteps: 2, numTrainingSteps: 10 });
    assert.deepEqual(sched.getLastLr(), [0, 0]);
    for (let i = 0; i < 3; i++) sched.step();
    assertClose(sched.getLastLr(), [0.1 * 0.875, 0.01 * 0.875], 1e-15);
    const opt2 = make();
    const sched2 = getScheduler("linear", opt2, { numWarmupSteps: 2, numTrainingSteps: 10 });
    sched2.loadStateDict(JSON.parse(JSON.stringify(sched.stateDict())));
    assert.deepEqual(
      opt2.paramGroups.map((g) => g.lr),
      opt.paramGroups.map((g) => g.lr),
    );
    sched.step();
    sched2.step();
    assert.deepEqual(sched2.getLastLr(), sched.getLastLr());
    assert.equal(sched2.lastEpoch, 4);
  });

  it("LRScheduler takes any lambda, one per group or shared (PyTorch's LambdaLR)", () => {
    const opt = new SGD([param([1])], { lr: 2 });
    const sched = new LRScheduler(opt, (s) => 0.5 ** s);
    const lrs = [sched.getLastLr()[0]];
    sched.step();
    lrs.push(sched.getLastLr()[0]);
    sched.step();
    lrs.push(opt.paramGroups[0]!.lr);
    assert.deepEqual(lrs, [2, 1, 0.5]);
  });
});
