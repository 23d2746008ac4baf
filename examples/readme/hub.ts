/** README "Loading by Hub id": a model, tokenizer and adapter by id, then uploads (the tests run it against a local mock Hub). */
import { AutoModelForCausalLM, AutoPeftModelForCausalLM, AutoTokenizer, PeftModel } from "peft-ts";

const model = AutoModelForCausalLM.fromPretrained("Qwen/Qwen2.5-0.5B-Instruct", { revision: "main" });
const tok = await AutoTokenizer.fromPretrained("Qwen/Qwen2.5-0.5B-Instruct");
const peft = PeftModel.fromPretrained(model, "someone/qwen2.5-lora");        // adapter by id
const auto = AutoPeftModelForCausalLM.fromPretrained("someone/qwen2.5-lora"); // base_model_name_or_path may be an id
console.log(tok.length, peft.activeAdapter, auto.getBaseModel().nameOrPath);

await peft.pushToHub("me/my-lora", { private: true, commitMessage: "r=8 on q,v" });
await peft.mergeAndUnload().pushToHub("me/my-merged-model");
