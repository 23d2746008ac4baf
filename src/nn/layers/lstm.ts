/** Multi-layer, optionally bidirectional LSTM with PyTorch's parameter names, gate order and initialisation. */
import {
  type Generator,
  type Tensor,
  add,
  cat,
  chunk,
  dropout,
  linear,
  matmul,
  mul,
  select,
  sigmoid,
  stack,
  tanh,
  transpose,
  zeros,
  parameter,
} from "../../tensor/index.js";
import { Module } from "../module.js";
import { uniform } from "../init.js";

/** Options of LSTM (PyTorch's names). */
export interface LSTMOptions {
  numLayers?: number;
  bias?: boolean;
  /** Input and output are [batch, time, features] instead of [time, batch, features]. */
  batchFirst?: boolean;
  /** Dropout on the outputs of every layer but the last, in train mode. */
  dropout?: number;
  bidirectional?: boolean;
  generator?: Generator;
}

/** Long short-term memory: gates i, f, g, o; c' = f·c + i·g; h' = o·tanh(c'). */
export class LSTM extends Module {
  readonly numLayers: number;
  readonly batchFirst: boolean;
  readonly bidirectional: boolean;
  readonly dropoutP: number;
  private readonly hasBias: boolean;

  constructor(
    readonly inputSize: number,
    readonly hiddenSize: number,
    opts: LSTMOptions = {},
  ) {
    super();
    this.numLayers = opts.numLayers ?? 1;
    this.batchFirst = opts.batchFirst ?? false;
    this.bidirectional = opts.bidirectional ?? false;
    this.dropoutP = opts.dropout ?? 0;
    this.hasBias = opts.bias ?? true;
    const bound = 1 / Math.sqrt(hiddenSize);
    const dirs = this.bidirectional ? 2 : 1;
    for (let l = 0; l < this.numLayers; l++) {
      const inF = l === 0 ? inputSize : hiddenSize * dirs;
      for (const sfx of this.suffixes()) {
        const name = (w: string) => `${w}_l${l}${sfx}`;
        this.registerParameter(name("weight_ih"), parameter(uniform([4 * hiddenSize, inF], bound, opts.generator)));
        this.registerParameter(
          name("weight_hh"),
          parameter(uniform([4 * hiddenSize, hiddenSize], bound, opts.generator)),
        );
        if (this.hasBias) {
          this.registerParameter(name("bias_ih"), parameter(uniform([4 * hiddenSize], bound, opts.generator)));
          this.registerParameter(name("bias_hh"), parameter(uniform([4 * hiddenSize], bound, opts.generator)));
        }
      }
    }
  }

  private suffixes(): string[] {
    return this.bidirectional ? ["", "_reverse"] : [""];
  }

  /** Run the sequence from zero initial states; returns the output sequence and the final (h, c) per layer and direction. */
  forward(input: Tensor): { output: Tensor; hN: Tensor; cN: Tensor } {
    let x = this.batchFirst ? input : transpose(input, 0, 1); // [B, T, F]
    const hs: Tensor[] = [],
      cs: Tensor[] = [];
    for (let l = 0; l < this.numLayers; l++) {
      const outs = this.suffixes().map((sfx) => {
        const p = (w: string) => this.ownParameter(`${w}_l${l}${sfx}`);
        const r = this.runDirection(
          x,
          p("weight_ih")!,
          p("weight_hh")!,
          p("bias_ih"),
          p("bias_hh"),
          sfx === "_reverse",
        );
        hs.push(r.h);
        cs.push(r.c);
        return r.output;
      });
      x = outs.length === 1 ? outs[0]! : cat(outs, -1);
      if (l < this.numLayers - 1) x = dropout(x, this.dropoutP, this.training);
    }
    return { output: this.batchFirst ? x : transpose(x, 0, 1), hN: stack(hs, 0), cN: stack(cs, 0) };
  }

  private runDirection(x: Tensor, wIh: Tensor, wHh: Tensor, bIh: Tensor | null, bHh: Tensor | null, reverse: boolean) {
    const [batch, steps] = [x.shape[0]!, x.shape[1]!];
    // The input projection of every time step at once: one GEMM instead of one per step.
    let pre = linear(x, wIh, bIh);
    if (bHh) pre = add(pre, bHh);
    let h = zeros([batch, this.hiddenSize]);
    let c = zeros([batch, this.hiddenSize]);
    const outputs = new Array<Tensor>(steps);
    for (let s = 0; s < steps; s++) {
      const t = reverse ? steps - 1 - s : s;
      const gates = add(select(pre, 1, t), matmul(h, transpose(wHh)));
      const [i, f, g, o] = chunk(gates, 4, -1) as [Tensor, Tensor, Tensor, Tensor];
      c = add(mul(sigmoid(f), c), mul(sigmoid(i), tanh(g)));
      h = mul(sigmoid(o), tanh(c));
      outputs[t] = h;
    }
    return { output: stack(outputs, 1), h, c };
  }

  protected override extraRepr(): string {
    return (
      `${this.inputSize}, ${this.hiddenSize}, num_layers=${this.numLayers}, ` +
      `batch_first=${this.batchFirst}, bidirectional=${this.bidirectional}`
    );
  }
}
