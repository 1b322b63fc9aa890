// Mermaid's own parser on each diagram of a JSON list read from stdin; prints a JSON list
// of verdicts: the diagram type when it parses, "error: <message>" when it does not.
// Mermaid sanitizes labels with DOMPurify, which needs a DOM: jsdom provides one.
import { JSDOM } from "jsdom";

const dom = new JSDOM("");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");

let input = "";
for await (const chunk of process.stdin) input += chunk;
const verdicts = [];
for (const text of JSON.parse(input)) {
  try {
    const parsed = await mermaid.parse(text);
    verdicts.push(parsed.diagramType);
  } catch (error) {
    verdicts.push(`error: ${String(error.message ?? error)}`);
  }
}
process.stdout.write(JSON.stringify(verdicts));
