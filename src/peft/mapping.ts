/** HF peft's default target modules per model_type (peft/utils/constants.py). */

/** LoRA (and AdaLoRA, LoHa, LoKr) targets when target_modules is not given. */
export const LORA_TARGETS: Record<string, string[]> = {
  t5: ["q", "v"],
  mt5: ["q", "v"],
  bart: ["q_proj", "v_proj"],
  gpt2: ["c_attn"],
  bloom: ["query_key_value"],
  opt: ["q_proj", "v_proj"],
  gptj: ["q_proj", "v_proj"],
  gpt_neox: ["query_key_value"],
  gpt_neo: ["q_proj", "v_proj"],
  bert: ["query", "value"],
  roberta: ["query", "value"],
  "xlm-roberta": ["query", "value"],
  electra: ["query", "value"],
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  mixtral: ["q_proj", "v_proj"],
  gemma: ["q_proj", "v_proj"],
  gemma2: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  phi: ["q_proj", "v_proj", "fc1", "fc2"],
  // Newer than peft 0.15.2 (peft ≥ 0.16): Gemma 3 text and Qwen3.
  gemma3_text: ["q_proj", "v_proj"],
  qwen3: ["q_proj", "v_proj"],
};

/** IA3 targets by model_type. */
export const IA3_TARGETS: Record<string, string[]> = {
  t5: ["k", "v", "wo"],
  mt5: ["k", "v", "wi_1"],
  gpt2: ["c_attn", "mlp.c_proj"],
  bloom: ["query_key_value", "mlp.dense_4h_to_h"],
  bert: ["key", "value", "output.dense"],
  roberta: ["key", "value", "output.dense"],
  llama: ["k_proj", "v_proj", "down_proj"],
  mistral: ["k_proj", "v_proj", "down_proj"],
  qwen2: ["q_proj", "v_proj", "down_proj"],
  opt: ["q_proj", "k_proj", "fc2"],
  gpt_neox: ["query_key_value", "dense_4h_to_h"],
  gemma: ["q_proj", "v_proj", "down_proj"],
  gemma2: ["q_proj", "v_proj", "down_proj"],
  gemma3_text: ["q_proj", "v_proj", "down_proj"],
  qwen3: ["q_proj", "v_proj", "down_proj"],
};

/** IA3 feed-forward modules by model_type (scaled on their input instead of their output). */
export const IA3_FEEDFORWARD: Record<string, string[]> = {
  t5: ["wo"],
  mt5: [],
  gpt2: ["mlp.c_proj"],
  bloom: ["mlp.dense_4h_to_h"],
  bert: ["output.dense"],
  roberta: ["output.dense"],
  llama: ["down_proj"],
  mistral: ["down_proj"],
  qwen2: ["down_proj"],
  opt: ["fc2"],
  gpt_neox: ["dense_4h_to_h"],
  gemma: ["down_proj"],
  gemma2: ["down_proj"],
  gemma3_text: ["down_proj"],
  qwen3: ["down_proj"],
};

/** LN tuning targets by model_type (the normalisation layers whose copies are trained). */
export const LN_TUNING_TARGETS: Record<string, string[]> = {
  llama: ["input_layernorm", "post_attention_layernorm", "norm"],
  bloom: ["input_layernorm", "post_attention_layernorm", "ln_f"],
  t5: ["layer_norm", "final_layer_norm"],
  mt5: ["layer_norm", "final_layer_norm"],
  gpt2: ["ln_1", "ln_2", "ln_f"],
  mistral: ["input_layernorm", "post_attention_layernorm", "norm"],
  gemma: ["input_layernorm", "post_attention_layernorm", "norm"],
  gemma2: [
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
    "norm",
  ],
  qwen2: ["post_attention_layernorm"],
};

/** FourierFT targets by model_type (the model types peft-ts has). */
export const FOURIERFT_TARGETS: Record<string, string[]> = {
  t5: ["q", "v"],
  mt5: ["q", "v"],
  bart: ["q_proj", "v_proj"],
  gpt2: ["mlp.c_proj"],
  bloom: ["query_key_value"],
  opt: ["q_proj", "v_proj"],
  gpt_neox: ["query_key_value"],
  bert: ["query", "value"],
  roberta: ["query", "value"],
  "xlm-roberta": ["query", "value"],
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  phi: ["q_proj", "v_proj", "fc1", "fc2"],
  gemma: ["q_proj", "v_proj"],
  gemma2: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
};

/** VeRA targets by model_type (the model types peft-ts has). */
export const VERA_TARGETS: Record<string, string[]> = {
  t5: ["q", "v"],
  mt5: ["q", "v"],
  bart: ["q_proj", "v_proj"],
  gpt2: ["c_attn"],
  bloom: ["query_key_value"],
  opt: ["q_proj", "v_proj"],
  gpt_neox: ["query_key_value"],
  bert: ["query", "value"],
  roberta: ["query", "value"],
  "xlm-roberta": ["query", "value"],
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  phi: ["q_proj", "v_proj"],
  gemma: ["q_proj", "v_proj"],
  gemma2: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
};

/** Heads that become modules_to_save automatically per task type. */
export const TASK_HEADS: Record<string, string[]> = {
  SEQ_CLS: ["classifier", "score"],
  TOKEN_CLS: ["classifier", "score"],
  QUESTION_ANS: ["qa_outputs"],
};
