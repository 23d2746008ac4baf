/** README "Using the engine directly": a gradient through the tensor engine. */
import * as T from "peft-ts/tensor";
const w = T.parameter(T.tensor([[0.5, -1], [2, 0.25]]));
const loss = T.tidy(() => {
  const l = T.mean(T.square(T.matmul(T.tensor([[1, 2]]), w)));
  l.backward();                               // w.grad now holds dl/dw
  return l.item();
});
console.log(loss, w.grad!.toArray());
