// Reads a GGUF file with @huggingface/gguf (an independent reader) and checks
// that its metadata and tensor infos match what `alloy inspect --json
// --tensors` reports for the same file. Exit 0 on match, 1 on mismatch.
import { readFileSync } from "node:fs";
import { gguf } from "@huggingface/gguf";

const [file, alloyJson] = process.argv.slice(2);
const alloy = JSON.parse(readFileSync(alloyJson, "utf8"));
const { metadata, tensorInfos } = await gguf(file, { allowLocalFile: true });
const problems = [];
const num = (v) => (typeof v === "bigint" ? Number(v) : v);

// Metadata: every key alloy lists, with the same scalar value or array length.
const expected = alloy.gguf.metadata;
for (const [key, described] of Object.entries(expected)) {
  if (!(key in metadata)) { problems.push(`missing key ${key}`); continue; }
  const v = metadata[key];
  if (Array.isArray(v)) {
    const m = /^\[(\d+) × /.exec(described);
    if (!m || Number(m[1]) !== v.length) problems.push(`${key}: ${v.length} elements vs ${described}`);
  } else if (typeof v === "string") {
    // alloy shows at most 200 characters and escapes control characters.
    const plain = v.slice(0, 80).split(/[\x00-\x1f\x7f]/)[0];
    if (!described.startsWith(plain)) problems.push(`${key}: '${v}' vs '${described}'`);
  } else if (typeof v === "boolean") {
    if (String(v) !== described) problems.push(`${key}: ${v} vs ${described}`);
  } else if (Math.abs(num(v) - Number(described)) > 1e-5 * Math.max(1, Math.abs(num(v)))) {
    problems.push(`${key}: ${num(v)} vs ${described}`);
  }
}
if (num(metadata.version) !== alloy.gguf.version) problems.push(`version ${metadata.version}`);
if (num(metadata.kv_count) !== Object.keys(expected).length) {
  problems.push(`kv_count ${metadata.kv_count} vs ${Object.keys(expected).length}`);
}

// Tensor infos: names in order, shapes (GGUF order = torch order reversed), types.
const tensors = alloy.tensors;
if (tensorInfos.length !== tensors.length) problems.push(`${tensorInfos.length} tensors vs ${tensors.length}`);
const typeNames = { 0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 30: "BF16" };
for (let i = 0; i < Math.min(tensorInfos.length, tensors.length); i++) {
  const js = tensorInfos[i], a = tensors[i];
  const shape = js.shape.map(num).reverse();
  if (js.name !== a.name) problems.push(`tensor ${i}: ${js.name} vs ${a.name}`);
  if (JSON.stringify(shape) !== JSON.stringify(a.shape)) problems.push(`${a.name}: shape ${shape} vs ${a.shape}`);
  if ((typeNames[js.dtype] ?? `type ${js.dtype}`) !== a.stored_type) problems.push(`${a.name}: type ${js.dtype} vs ${a.stored_type}`);
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`@huggingface/gguf read ${file}: ${Object.keys(expected).length} keys and ${tensors.length} tensors match alloy`);
