/** Chat templates: choosing one and rendering it through @huggingface/jinja as transformers' apply_chat_template does. */
import { Template } from "@huggingface/jinja";
import type { ChatMessage } from "./types.js";

/** One template, or named templates ({default, tool_use, rag, …}). */
export type ChatTemplates = string | Record<string, string>;

/** Normalises a `chat_template` value of tokenizer_config.json: a string, or a list of {name, template}. */
export function parseChatTemplate(value: unknown): ChatTemplates | null {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named: Record<string, string> = {};
    for (const entry of value as { name?: unknown; template?: unknown }[]) {
      if (typeof entry?.name === "string" && typeof entry.template === "string") named[entry.name] = entry.template;
    }
    return named;
  }
  if (value !== null && typeof value === "object") return { ...(value as Record<string, string>) };
  return null;
}

/** Picks the template to render, as transformers' get_chat_template: a requested name or string, else tool_use/default. */
export function selectChatTemplate(
  templates: ChatTemplates | null,
  requested: string | undefined,
  hasTools: boolean,
): string {
  if (templates !== null && typeof templates === "object") {
    if (requested !== undefined) return templates[requested] ?? requested;
    if (hasTools && templates.tool_use !== undefined) return templates.tool_use;
    if (templates.default !== undefined) return templates.default;
    throw new Error(
      "This model has multiple chat templates with no default specified! Pass a template or the name of one as " +
        `\`chatTemplate\`. Available template names are ${JSON.stringify(Object.keys(templates).sort())}.`,
    );
  }
  if (requested !== undefined) return requested;
  if (templates !== null) return templates;
  throw new Error(
    "Cannot use applyChatTemplate() because tokenizer.chatTemplate is not set and no template argument was passed! " +
      "The tokenizer folder has no chat_template (tokenizer_config.json or chat_template.jinja): " +
      "set tokenizer.chatTemplate " +
      "or pass {chatTemplate}. See https://huggingface.co/docs/transformers/main/en/chat_templating",
  );
}

const compiled = new Map<string, Template>();

/** Renders a template with the given variables (messages, add_generation_prompt, special tokens, …); the package
 * itself provides transformers' globals raise_exception, strftime_now and range. */
export function renderChatTemplate(template: string, variables: Record<string, unknown>): string {
  let program = compiled.get(template);
  if (program === undefined) {
    try {
      program = new Template(template);
    } catch (e) {
      throw new Error(`Cannot parse the chat template: ${(e as Error).message}`);
    }
    compiled.set(template, program);
  }
  try {
    return program.render(variables);
  } catch (e) {
    throw new Error(`Chat template error: ${(e as Error).message}`);
  }
}

/** Cuts the rendered chat right after the final message's text, so that generation continues that message. */
export function cutAfterFinalMessage(rendered: string, messages: ChatMessage[]): string {
  const last = messages[messages.length - 1];
  let text: unknown = last?.content;
  if (Array.isArray(text)) text = (text[text.length - 1] as { text?: unknown } | undefined)?.text;
  if (typeof text !== "string") throw new Error("continueFinalMessage needs a final message with text content");
  for (const needle of [text, text.trim()]) {
    const at = rendered.lastIndexOf(needle);
    if (at >= 0) return rendered.slice(0, at + needle.length);
  }
  throw new Error("continueFinalMessage: the final message does not appear in the rendered chat");
}
