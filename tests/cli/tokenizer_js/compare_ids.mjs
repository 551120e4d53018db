// Encodes every corpus text with @huggingface/tokenizers and with
// `alloy tokenize --json`, for every fixture directory; exit 1 on a mismatch.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { Tokenizer } from "@huggingface/tokenizers";

const [alloy, fixtures] = process.argv.slice(2);
const corpus = JSON.parse(readFileSync(`${fixtures}/corpus.json`, "utf8"));
const problems = [];
let compared = 0;
for (const name of readdirSync(fixtures).sort()) {
  if (name === "corpus.json" || name.endsWith(".txt")) continue;
  const dir = `${fixtures}/${name}`;
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
                                  JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
  corpus.forEach((text, i) => {
    for (const special of [true, false]) {
      const js = tokenizer.encode(text, { add_special_tokens: special }).ids;
      const file = `${fixtures}/text-${i}.txt`;
      writeFileSync(file, text);
      const args = ["tokenize", dir, "--file", file, "--json"];
      if (!special) args.push("--no-special");
      const ours = JSON.parse(execFileSync(alloy, args, { encoding: "utf8" })).ids;
      compared++;
      if (JSON.stringify(js) !== JSON.stringify(ours)) {
        problems.push(`${name} text ${i} ${JSON.stringify(text)} special=${special}:\n  js    ${JSON.stringify(js)}\n  alloy ${JSON.stringify(ours)}`);
      }
    }
  });
}
if (problems.length) {
  console.error(problems.join("\n"));
  console.error(`${problems.length} of ${compared} encodings differ`);
  process.exit(1);
}
console.log(`@huggingface/tokenizers and alloy agree on ${compared} encodings`);
