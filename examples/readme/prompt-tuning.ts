/** README "Methods": the prompt tuning snippet, run on the shipped tiny model. */
import { TaskType, getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { PromptTuningConfig } from "peft-ts";
const peft = getPeftModel(model, PromptTuningConfig({
  task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 8,
  prompt_tuning_init: "TEXT", prompt_tuning_init_text: "Answer as the assistant:", tokenizer_name_or_path: "assets/tiny-bard",
}));
peft.printTrainableParameters();
