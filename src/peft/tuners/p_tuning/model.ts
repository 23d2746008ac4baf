/**
 * PromptEncoder: P-tuning's reparameterised virtual tokens (HF's PromptEncoder). An Embedding of
 * num_virtual_tokens · num_transformer_submodules rows goes through an MLP (Linear-ReLU-Linear-ReLU-Linear) or a
 * bidirectional LSTM followed by Linear-ReLU-Linear; peft saves (and reloads) only that output.
 */
import { LSTM, Linear, ReLU, Sequential } from "../../../nn/index.js";
import { squeeze, unsqueeze, type Tensor } from "../../../tensor/index.js";
import { PromptLearningEncoder } from "../prompt-learning.js";
import { PromptEncoderReparameterizationType, type PromptEncoderConfig } from "./config.js";

/** P-tuning's encoder; with inference_mode only the embedding (holding the saved output) exists, as in peft. */
export class PromptEncoder extends PromptLearningEncoder {
  readonly encoderType: PromptEncoderReparameterizationType;
  mlp_head: Sequential | null = null;
  lstm_head: LSTM | null = null;

  /** @param config a prepared config (token_dim, encoder_hidden_size and num_transformer_submodules filled in) */
  constructor(config: PromptEncoderConfig) {
    const dim = config.token_dim!;
    super(config.num_virtual_tokens! * config.num_transformer_submodules!, dim, dim, config.inference_mode);
    this.encoderType = config.encoder_reparameterization_type;
    if (config.inference_mode) return;
    const hidden = config.encoder_hidden_size ?? dim;
    if (this.encoderType === PromptEncoderReparameterizationType.LSTM) {
      this.lstm_head = this.registerModule(
        "lstm_head",
        new LSTM(dim, hidden, {
          numLayers: config.encoder_num_layers,
          dropout: config.encoder_dropout,
          bidirectional: true,
          batchFirst: true,
        }),
      );
      this.mlp_head = this.registerModule(
        "mlp_head",
        new Sequential(new Linear(2 * hidden, 2 * hidden), ReLU(), new Linear(2 * hidden, dim)),
      );
    } else {
      if (config.encoder_num_layers !== 2) {
        process.emitWarning(`for MLP, the argument \`encoder_num_layers\` is ignored. Exactly 2 MLP layers are used.`);
      }
      this.mlp_head = this.registerModule(
        "mlp_head",
        new Sequential(new Linear(dim, hidden), ReLU(), new Linear(hidden, hidden), ReLU(), new Linear(hidden, dim)),
      );
    }
  }

  protected networkNames(): readonly string[] {
    return ["lstm_head", "mlp_head"];
  }

  override loadEncoded(saved: Tensor): boolean {
    const dropped = super.loadEncoded(saved);
    this.mlp_head = null;
    this.lstm_head = null;
    return dropped;
  }

  protected reparameterize(rows: Tensor): Tensor {
    if (this.lstm_head) return this.mlp_head!.forward(squeeze(this.lstm_head.forward(unsqueeze(rows, 0)).output, 0));
    return this.mlp_head!.forward(rows);
  }
}
