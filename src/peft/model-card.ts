/** The README.md written next to a saved adapter (a short model card with HF's front matter). */

/** Model card text for an adapter of `baseModel`. */
export function adapterModelCard(baseModel: string | null): string {
  const front = ["---", ...(baseModel ? [`base_model: ${baseModel}`] : []), "library_name: peft", "---"].join("\n");
  return `${front}

# Adapter

A parameter-efficient fine-tuning adapter in Hugging Face PEFT's format, saved by peft-ts.
Load it in TypeScript with \`PeftModel.fromPretrained(baseModel, dir)\`, or in Python with
\`peft.PeftModel.from_pretrained(base_model, dir)\`.

### Framework versions

- peft-ts 0.1.0 (PEFT format 0.15)
`;
}
