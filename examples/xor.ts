/**
 * The engine end to end on a toy problem: a 2-16-1 MLP learns XOR with AdamW. Run: npm run example
 */
import * as T from "../src/tensor/index.js";
import * as nn from "../src/nn/index.js";
import { AdamW } from "../src/optim/index.js";
import { backend } from "../src/backend/index.js";

class MLP extends nn.Module {
  fc1 = this.registerModule("fc1", new nn.Linear(2, 16, { generator: new T.Generator(1) }));
  fc2 = this.registerModule("fc2", new nn.Linear(16, 1, { generator: new T.Generator(2) }));
  forward(x: T.Tensor): T.Tensor {
    return T.sigmoid(this.fc2.forward(T.tanh(this.fc1.forward(x))));
  }
}

const x = T.keep(T.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]));
const y = T.keep(T.tensor([[0], [1], [1], [0]]));
const model = new MLP();
const opt = new AdamW(model.parameters(), { lr: 0.05, weightDecay: 0 });
console.log(`backend: ${backend().name}`);
for (let step = 1; step <= 300; step++) {
  const loss = T.tidy(() => {
    const l = T.mean(T.square(T.sub(model.forward(x), y)));
    l.backward();
    opt.step();
    opt.zeroGrad();
    return l.item();
  });
  if (step % 50 === 0) console.log(`step ${step}: loss ${loss.toFixed(5)}`);
}
const pred = T.tidy(() => Array.from(model.forward(x).dataSync(), (v) => v.toFixed(3)));
console.log(`predictions for 00, 01, 10, 11: ${pred.join(", ")}; live storages: ${T.memory().liveStorages}`);
