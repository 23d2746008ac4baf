/** README "Methods" (seed methods draft): the bottleneck adapter snippet, run on the shipped tiny model. */
import { getPeftModel } from "peft-ts";
import { model } from "./model.js";

import { DoubleSeqBnConfig } from "peft-ts";
const peft = getPeftModel(model, DoubleSeqBnConfig({ reduction_factor: 16, non_linearity: "swish" }));
peft.printTrainableParameters();
