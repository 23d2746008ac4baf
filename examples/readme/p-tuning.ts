/** README "Methods": the P-tuning snippet, run on the shipped tiny model. */
import { TaskType, getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { PromptEncoderConfig } from "peft-ts";
const peft = getPeftModel(model, PromptEncoderConfig({
  task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 10, encoder_reparameterization_type: "LSTM", encoder_hidden_size: 128,
}));
peft.printTrainableParameters();
