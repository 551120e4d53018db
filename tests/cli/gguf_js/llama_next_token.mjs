// Loads a GGUF file with llama.cpp (through the npm package node-llama-cpp),
// evaluates a fixed token sequence and prints the next-token distribution as
// JSON {"probs": [p_0, ..., p_{V-1}]}. Exits 1 if any value is not finite.
import { getLlama } from "node-llama-cpp";

const [file, tokensArg] = process.argv.slice(2);
const tokens = tokensArg.split(",").map(Number);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: file });
const context = await model.createContext({ contextSize: 64 });
const sequence = context.getSequence();
for await (const out of sequence.evaluateWithMetadata(tokens, { probabilities: true })) {
  const probs = [];
  for (const [token, p] of out.probabilities) probs[token] = p;
  const filled = Array.from(probs, (p) => p ?? 0);
  if (!filled.every(Number.isFinite)) {
    console.error("non-finite probabilities");
    process.exit(1);
  }
  console.log(JSON.stringify({ probs: filled }));
  break;
}
await context.dispose();
await model.dispose();
