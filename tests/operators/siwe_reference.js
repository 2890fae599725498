// Makes EIP-4361 messages with the reference implementation (npm `siwe`) and signs them with
// ethers (EIP-191 personal_sign), for tests/operators/test_siwe.py. Reads one JSON document on
// stdin: {"key": "0x…", "messages": [{SiweMessage fields}, …]}; writes [{text, signature}, …].
const { SiweMessage } = require("siwe");
const { Wallet } = require("ethers");

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", async () => {
  const { key, messages } = JSON.parse(input);
  const wallet = new Wallet(key);
  const out = [];
  for (const fields of messages) {
    const text = new SiweMessage({ address: wallet.address, ...fields }).prepareMessage();
    out.push({ text, signature: await wallet.signMessage(text) });
  }
  process.stdout.write(JSON.stringify(out));
});
