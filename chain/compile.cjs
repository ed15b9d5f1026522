#!/usr/bin/env node
// Compiles chain/contracts/*.sol with the pinned solcjs and writes chain/artifacts/<Contract>.json
// ({contractName, abi, bytecode, deployedBytecode}); `--check` compares instead of writing and
// fails if an artifact is missing or differs from a fresh compile.
//
//   scripts/install-tools.sh solc && node chain/compile.cjs [--check]
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const solcPath = path.join(root, ".tools/solc/node_modules/solc");
if (!fs.existsSync(solcPath)) {
  console.error("error: solc is not installed; run scripts/install-tools.sh solc");
  process.exit(1);
}
const solc = require(solcPath);

const contractsDir = path.join(__dirname, "contracts");
const artifactsDir = path.join(__dirname, "artifacts");
const check = process.argv.includes("--check");

// Source keys are repo-relative, so the metadata hash in the bytecode doesn't depend on where the
// repository is checked out.
const sources = {};
for (const file of fs.readdirSync(contractsDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[`contracts/${file}`] = { content: fs.readFileSync(path.join(contractsDir, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "cancun",
    viaIR: true,
    optimizer: { enabled: true, runs: 10000 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
// Warnings fail the build too, as clippy warnings do.
const errors = (output.errors || []).filter((e) => e.severity === "error" || e.severity === "warning");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

let stale = 0;
for (const [source, contracts] of Object.entries(output.contracts)) {
  for (const [name, out] of Object.entries(contracts)) {
    if (out.evm.bytecode.object.length === 0) continue; // interfaces and abstract contracts
    const artifact = {
      contractName: name,
      source,
      compiler: `solc ${solc.version()}`,
      abi: out.abi,
      bytecode: "0x" + out.evm.bytecode.object,
      deployedBytecode: "0x" + out.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(artifact, null, 2) + "\n";
    const file = path.join(artifactsDir, `${name}.json`);
    if (check) {
      if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== text) {
        console.error(`stale: chain/artifacts/${name}.json differs from a fresh compile of ${source}`);
        stale += 1;
      }
    } else {
      fs.mkdirSync(artifactsDir, { recursive: true });
      fs.writeFileSync(file, text);
      console.log(`wrote chain/artifacts/${name}.json (${(out.evm.deployedBytecode.object.length / 2) | 0} bytes deployed)`);
    }
  }
}
if (stale > 0) {
  console.error("run: scripts/install-tools.sh solc && node chain/compile.cjs");
  process.exit(1);
}
