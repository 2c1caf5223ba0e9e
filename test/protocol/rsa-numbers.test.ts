import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { rsaNumbers } from "../../src/protocol/rsa-numbers.ts";
import { makeTempDir } from "../support/cli.ts";

const SOURCE = fileURLToPath(new URL("../../src/protocol/rsa-numbers.ts", import.meta.url));

test("the numbers of a private key, its public half and its PEM copy are the same, as JWK gives them", () => {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const fromPem = createPrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }));
  const jwk = fromPem.export({ format: "jwk" });
  for (const key of [privateKey, publicKey, fromPem]) {
    const { n, e } = rsaNumbers(key);
    assert.equal(n.toString("base64url"), jwk.n);
    assert.equal(e.toString("base64url"), jwk.e);
  }
});

// Node 20 deadlocks when a JWK export of a generated key meets the full GC
// that frees the key's generation job (both take the key's lock). Under a
// small young generation that happens within the first few hundred exports:
// a direct `export({ format: "jwk" })` in this loop hung in 3 runs of 3 on
// Node 20.20.2 (it hung test/fuzz/http-bodies in CI, through the server's
// command key). The loop runs in a child process, so a deadlock fails the
// test by its timeout instead of hanging the run.
test("reads generated keys' numbers thousands of times while the collector runs, and finishes", () => {
  const temp = makeTempDir("mpota-rsa-numbers-");
  try {
    const script = join(temp.dir, "stress.ts");
    writeFileSync(
      script,
      `import { generateKeyPairSync } from "node:crypto";
import { rsaNumbers } from ${JSON.stringify(SOURCE)};
let junk: number[][] = [];
let n = 0;
for (let k = 0; k < 10; k++) {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 512 });
  for (let j = 0; j < 200; j++) {
    junk.push(new Array(50 + (j % 7) * 30).fill(j));
    if (junk.length > 2000) junk = [];
    n += rsaNumbers(j % 2 ? publicKey : privateKey).n.length > 0 ? 1 : 0;
  }
}
console.log("read", n);
`,
    );
    const child = spawnSync(process.execPath, ["--max-semi-space-size=1", "--import", "tsx", script], {
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(child.signal, null, `the loop did not finish (deadlocked?): ${child.stderr}`);
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout.trim(), "read 2000");
  } finally {
    temp.remove();
  }
});
