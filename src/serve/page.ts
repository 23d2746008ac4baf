/**
 * The chat page served at /: one message box, any number of panes side by side, each talking to the base model or
 * an adapter, streaming through /v1/chat/completions. Plain HTML and JavaScript, no build step.
 */

/** The page's HTML (scripts inline). */
export const CHAT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>peft serve</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem; }
  #panes { display: flex; gap: 1rem; flex-wrap: wrap; }
  .pane { flex: 1 1 20rem; border: 1px solid #ccc; border-radius: 6px; padding: .5rem; }
  .log { min-height: 8rem; white-space: pre-wrap; font-family: ui-monospace, monospace; }
  .user { color: #555; } .assistant { color: #000; } .error { color: #b00; }
  form { display: flex; gap: .5rem; margin: 1rem 0; } #message { flex: 1; }
</style>
</head>
<body>
<h1>peft serve</h1>
<label>API key <input id="key" type="password" placeholder="optional"></label>
<button id="add" type="button">Add pane</button>
<form id="send"><input id="message" placeholder="Message" autocomplete="off"><button type="submit">Send</button></form>
<div id="panes"></div>
<script>
const panes = document.getElementById("panes");
let models = [];
function headers() {
  const key = document.getElementById("key").value;
  return key ? { "content-type": "application/json", authorization: "Bearer " + key } : { "content-type": "application/json" };
}
async function loadModels() {
  const res = await fetch("/v1/models", { headers: headers() });
  models = res.ok ? (await res.json()).data.map((m) => m.id) : [];
  for (const select of document.querySelectorAll(".pane select")) fillSelect(select);
}
function fillSelect(select) {
  const current = select.value;
  select.replaceChildren(...models.map((id) => Object.assign(document.createElement("option"), { value: id, textContent: id })));
  if (models.includes(current)) select.value = current;
}
function addPane(model) {
  const pane = document.createElement("div");
  pane.className = "pane";
  pane.innerHTML = '<select></select> <button type="button">×</button><div class="log"></div>';
  const select = pane.querySelector("select");
  fillSelect(select);
  if (model && models.includes(model)) select.value = model;
  pane.querySelector("button").onclick = () => pane.remove();
  pane.history = [];
  panes.append(pane);
}
function line(pane, role, text) {
  const div = Object.assign(document.createElement("div"), { className: role, textContent: (role === "user" ? "> " : "") + text });
  pane.querySelector(".log").append(div);
  return div;
}
async function ask(pane, text) {
  pane.history.push({ role: "user", content: text });
  line(pane, "user", text);
  const out = line(pane, "assistant", "");
  const res = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(),
    body: JSON.stringify({ model: pane.querySelector("select").value, messages: pane.history, stream: true }),
  });
  if (!res.ok) { out.className = "error"; out.textContent = (await res.json()).error.message; return; }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", reply = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split("\\n\\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const delta = JSON.parse(data).choices[0]?.delta?.content ?? "";
      reply += delta;
      out.textContent = reply;
    }
  }
  pane.history.push({ role: "assistant", content: reply });
  out.dataset.done = "true";
}
document.getElementById("send").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("message");
  const text = input.value;
  if (!text) return;
  input.value = "";
  for (const pane of panes.querySelectorAll(".pane")) ask(pane, text);
};
document.getElementById("add").onclick = () => addPane();
document.getElementById("key").onchange = loadModels;
loadModels().then(() => { addPane(models[0]); addPane(models[1] ?? models[0]); });
</script>
</body>
</html>
`;
