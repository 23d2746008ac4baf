/** README "Serving many adapters": a mixed-adapter batch, streaming, and the server, on the shipped tiny model. */
import { AutoModelForCausalLM, AutoTokenizer, LoraConfig, PeftServer, ServedModel, TaskType, getPeftModel, tensor } from "peft-ts";
import { MODEL } from "./model.js";

const lora = LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, target_modules: ["q_proj", "v_proj"], init_lora_weights: "gaussian" });
const peft = getPeftModel(AutoModelForCausalLM.fromPretrained(MODEL), lora, "sql");
peft.addAdapter("chat", lora);
const tokenizer = await AutoTokenizer.fromPretrained(MODEL);
const ids = tokenizer.encode("Once upon a time");
const prompts = tensor(Int32Array.from([...ids, ...ids, ...ids]), [3, ids.length], "int32");

// One batch, one adapter per row ("__base__": none); nothing is merged.
const out = peft.generateDetailed({ inputIds: prompts, adapterNames: ["sql", "chat", "__base__"], maxNewTokens: 8 });
console.log(out.finishReasons, out.logprobs[0]);

// Streaming: an async iterator of steps; stop strings end a row.
const rows = { inputIds: prompts, adapterNames: ["sql", "chat", "__base__"], maxNewTokens: 8, stopStrings: ["."], tokenizer };
for await (const step of peft.generateStream(rows)) {
  console.log(step.tokens.map((t) => tokenizer.decode([t])));
}

// The OpenAI-compatible server (`peft serve` on the command line).
const server = new PeftServer(new ServedModel(peft), tokenizer, { modelName: "tiny-bard" });
const url = await server.listen(0);
const res = await fetch(`${url}/v1/completions`, {
  method: "POST", headers: { "content-type": "application/json" },
  body: JSON.stringify({ model: "sql", prompt: "Once upon a time", max_tokens: 8, temperature: 0 }),
});
console.log((await res.json()).choices[0].text);
await server.close();
