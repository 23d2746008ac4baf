/**
 * TextStreamer (transformers' streamer for one sequence): turns the tokens generate() puts into text pieces as
 * soon as they decode to whole characters, for printing or sending while generation runs.
 */
import { IncrementalText, type Streamer } from "../models/generation/index.js";

/** What a TextStreamer needs from a tokenizer. */
export interface StreamingDecoder {
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
}

/** Options of TextStreamer. */
export interface TextStreamerOptions {
  /** Leave special tokens (eos, …) out of the text. */
  skipSpecialTokens?: boolean;
  /** Receives each new piece of text; the last call has streamEnd true (default: write to stdout). */
  onText?: (text: string, streamEnd: boolean) => void;
}

/** Streams the text of a single generated sequence (batch size 1). */
export class TextStreamer implements Streamer {
  private ids: number[] = [];
  private text: IncrementalText;
  private printed = 0;
  private readonly onText: (text: string, streamEnd: boolean) => void;

  constructor(
    private readonly tokenizer: StreamingDecoder,
    private readonly options: TextStreamerOptions = {},
  ) {
    this.onText = options.onText ?? ((text, end) => process.stdout.write(end ? `${text}\n` : text));
    this.text = this.freshText();
  }

  /** Add the step's token and emit the text that is now complete. */
  put(tokens: number[]): void {
    if (tokens.length !== 1)
      throw new Error(
        `TextStreamer streams one sequence; got a batch of ${tokens.length} (use generateStream for batches)`,
      );
    this.ids.push(tokens[0]!);
    const complete = this.text.update(this.ids);
    if (complete.length > this.printed) {
      this.onText(complete.slice(this.printed), false);
      this.printed = complete.length;
    }
  }

  /** Emit what is left and reset for the next generation. */
  end(): void {
    const rest = this.decode(this.ids).slice(this.printed);
    this.ids = [];
    this.text = this.freshText();
    this.printed = 0;
    this.onText(rest, true);
  }

  private decode(ids: number[]): string {
    return this.tokenizer.decode(ids, { skipSpecialTokens: this.options.skipSpecialTokens ?? false });
  }

  /** The text of the next generation, decoded a few tokens at a time. */
  private freshText(): IncrementalText {
    return new IncrementalText((ids) => this.decode(ids));
  }
}
