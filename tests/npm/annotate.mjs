// @actions/core's own annotation commands for each annotation in the JSON list on stdin
// ({level, message, title, file, line, endLine}), one per line on stdout.
import { readFileSync } from "node:fs";
import * as core from "@actions/core";

for (const a of JSON.parse(readFileSync(0, "utf8"))) {
  core[a.level](a.message, { title: a.title, file: a.file, startLine: a.line, endLine: a.endLine });
}
