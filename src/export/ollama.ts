/**
 * Ollama's Modelfile for exported GGUF files: FROM the model, ADAPTER the LoRA, and the chat template translated
 * from Jinja (Hugging Face) to Go's text/template (Ollama) for the template families it recognises.
 */

/** What a Modelfile needs: file names relative to the Modelfile, and the tokenizer's chat template and stops. */
export interface ModelfileInputs {
  model: string;
  adapter?: string;
  chatTemplate: string | null;
  /** Tokens that end a turn (the tokenizer's eos and end-of-turn markers). */
  stops: string[];
}

// Ollama's own templates of the two chat formats most fine-tunes use (Go text/template, as in Ollama's library).
const CHATML = `{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
`;
const LLAMA3 = `{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

`;

/** The Go template for a Jinja chat template, or null when its family is not recognised. */
export function ollamaTemplate(jinja: string | null): string | null {
  if (!jinja) return null;
  if (jinja.includes("<|im_start|>") && jinja.includes("<|im_end|>")) return CHATML;
  if (jinja.includes("<|start_header_id|>") && jinja.includes("<|eot_id|>")) return LLAMA3;
  return null;
}

/** The text of a Modelfile. Without a recognised template, Ollama falls back to the GGUF's tokenizer.chat_template. */
export function modelfile(inputs: ModelfileInputs): string {
  const lines = [`# Made by peft-ts: ollama create NAME -f Modelfile`, `FROM ./${inputs.model}`];
  if (inputs.adapter) lines.push(`ADAPTER ./${inputs.adapter}`);
  const template = ollamaTemplate(inputs.chatTemplate);
  if (template) lines.push(`TEMPLATE """${template}"""`);
  else if (inputs.chatTemplate)
    lines.push(
      "# The chat template's family was not recognised: Ollama reads tokenizer.chat_template from the GGUF file.",
    );
  for (const stop of new Set(inputs.stops)) lines.push(`PARAMETER stop ${JSON.stringify(stop)}`);
  return `${lines.join("\n")}\n`;
}
