/** PEFT: configs, getPeftModel, PeftModel and its task classes, and every registered method. */
import "./tuners/lora/index.js";
import "./tuners/adalora/index.js";
import "./tuners/prompt_tuning/index.js";
import "./tuners/p_tuning/index.js";
import "./tuners/prefix_tuning/index.js";
import "./tuners/adaption_prompt/index.js";
import "./tuners/ia3/index.js";
import "./tuners/trainable_tokens/index.js";
import "./tuners/loha/index.js";
import "./tuners/lokr/index.js";
import "./tuners/ln_tuning/index.js";
import "./tuners/hra/index.js";
import "./tuners/bone/index.js";
import "./tuners/poly/index.js";
import "./tuners/fourierft/index.js";
import "./tuners/vera/index.js";
import "./tuners/oft/index.js";
import "./tuners/boft/index.js";
import "./tuners/bitfit/index.js";
import "./tuners/freeze/index.js";
import "./tuners/diff_pruning/index.js";
import "./tuners/bottleneck/index.js";
import "./tuners/multitask_prompt_tuning/index.js";
import "./tuners/xlora/index.js";

export { PeftType, TaskType } from "./config.js";
export type { PeftConfig } from "./config.js";
export {
  PeftModel,
  PeftModelForCausalLM,
  PeftModelForSeq2SeqLM,
  PeftModelForSequenceClassification,
  PeftModelForTokenClassification,
  PeftModelForQuestionAnswering,
  PeftModelForFeatureExtraction,
  getPeftModel,
  readAdapterConfig,
  injectAdapterInModel,
  countTrainableParameters,
  AutoPeftModel,
  AutoPeftModelForCausalLM,
  AutoPeftModelForSeq2SeqLM,
  AutoPeftModelForSequenceClassification,
  AutoPeftModelForTokenClassification,
  AutoPeftModelForQuestionAnswering,
} from "./peft-model.js";
export type { SaveOptions, LoadOptions, PeftGenerateOptions } from "./peft-model.js";
export { BASE_ROW, withAdapterNames } from "./mixed-batch.js";
export { configFromJson, registerMethod, hostFactory } from "./registry.js";
export type { PeftMethod, InjectedLayersMethod, VirtualTokensMethod, PromptEncoderContext } from "./registry.js";
export { HOST_NAME } from "./contract.js";
export type {
  AdapterHost,
  AdapterCapabilities,
  Merging,
  WeightedCombination,
  OptimizerStepHook,
  SavedAdapter,
  AdapterFiles,
  PeftTask,
  PeftInputs,
} from "./contract.js";
export {
  LoraConfig,
  LoraModel,
  LoraLayer,
  LoraLinear,
  LoraEmbedding,
  DoraLayer,
  DoraLinearVariant,
  plainLora,
  LORA_DISPATCHERS,
  dispatchLinear,
  dispatchEmbedding,
} from "./tuners/lora/index.js";
export type { LoraVariant, LoraDispatcher } from "./tuners/lora/index.js";
export { hotswapAdapter, hotswapAdapterFromStateDict, checkHotswapConfigsCompatible } from "./tuners/lora/index.js";
export { getLayerStatus, getModelStatus } from "./status.js";
export type { TunerLayerStatus, TunerModelStatus } from "./status.js";
export { getPeftModelStateDict, setPeftModelStateDict } from "./peft-state-dict.js";
export type { StateDictLoadResult } from "./peft-state-dict.js";
export type { CombinationType, WeightedAdapterOptions } from "./contract.js";
export { AdaLoraConfig, AdaLoraModel, AdaLoraLinear, RankAllocator, budgetSchedule } from "./tuners/adalora/index.js";
export type { RankPattern } from "./tuners/adalora/index.js";
export { PromptLearningModel, PromptLearningEncoder, PROMPT_ENCODER_FILE } from "./tuners/prompt-learning.js";
export type { PromptLearningConfig } from "./tuners/prompt-learning.js";
export { BaseTuner } from "./tuners/tuner.js";
export { PromptTuningConfig, PromptTuningInit, PromptEmbedding } from "./tuners/prompt_tuning/index.js";
export { PromptEncoderConfig, PromptEncoderReparameterizationType, PromptEncoder } from "./tuners/p_tuning/index.js";
export { PrefixTuningConfig, PrefixEncoder } from "./tuners/prefix_tuning/index.js";
export { AdaptionPromptConfig, AdaptionPromptModel, AdaptedAttention } from "./tuners/adaption_prompt/index.js";
export { IA3Config, IA3Model, IA3Linear } from "./tuners/ia3/index.js";
export { TrainableTokensConfig, TrainableTokensModel, TrainableTokensLayer } from "./tuners/trainable_tokens/index.js";
export { prepareModelForKbitTraining, isQuantizedModel, enableInputRequireGrads } from "./kbit.js";
export type { KbitTrainingOptions } from "./kbit.js";
export { LoHaConfig, LoHaModel, LoHaLinear } from "./tuners/loha/index.js";
export { LoKrConfig, LoKrModel, LoKrLinear } from "./tuners/lokr/index.js";
export type { LycorisConfig } from "./tuners/lycoris.js";
export { LNTuningConfig, LNTuningModel, LNTuningLayer } from "./tuners/ln_tuning/index.js";
export { HRAConfig, HRAModel, HRALinear } from "./tuners/hra/index.js";
export { BoneConfig, BoneModel, BoneLinear } from "./tuners/bone/index.js";
export { PolyConfig, PolyModel, PolyLinear, PolyRouter } from "./tuners/poly/index.js";
export type { WeightTransformConfig } from "./tuners/weight-transform.js";
export { FourierFTConfig, FourierFTModel, FourierFTLinear } from "./tuners/fourierft/index.js";
export { VeraConfig, VeraModel, VeraLinear } from "./tuners/vera/index.js";
export { OFTConfig, OFTModel, OFTLinear } from "./tuners/oft/index.js";
export { BOFTConfig, BOFTModel, BOFTLinear } from "./tuners/boft/index.js";
export { SelectionHost } from "./tuners/selection.js";
export type { ParameterSelection } from "./tuners/selection.js";
export { BitFitConfig, bitFitParameters } from "./tuners/bitfit/index.js";
export { FreezeConfig, freezeParameters } from "./tuners/freeze/index.js";
export { layerLists } from "./layer-lists.js";
export {
  DiffPruningConfig,
  DiffPruningModel,
  DiffPruningLinear,
  hardConcreteGate,
  expectedL0,
  HC_BETA,
  HC_GAMMA,
  HC_ZETA,
} from "./tuners/diff_pruning/index.js";
export {
  SeqBnConfig,
  DoubleSeqBnConfig,
  BottleneckModel,
  BottleneckAdapter,
  BottleneckSite,
} from "./tuners/bottleneck/index.js";
export type { BottleneckConfig } from "./tuners/bottleneck/index.js";
export {
  MultitaskPromptTuningConfig,
  MultitaskPromptTuningInit,
  MultitaskPromptEmbedding,
} from "./tuners/multitask_prompt_tuning/index.js";
export { XLoraConfig, XLoraModel, XLoraClassifier } from "./tuners/xlora/index.js";
