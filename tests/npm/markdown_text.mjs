// What a reader sees of a Markdown document read from stdin: marked renders it as GitHub
// Flavored Markdown, jsdom parses the HTML as a browser would (raw HTML in the text
// becomes elements), and the text of every table cell and list item is printed as a
// JSON list of strings, in document order.
import { JSDOM } from "jsdom";
import { marked } from "marked";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { document } = new JSDOM(marked.parse(input, { gfm: true })).window;
const shown = [...document.querySelectorAll("td, li")].map((node) => node.textContent);
process.stdout.write(JSON.stringify(shown));
