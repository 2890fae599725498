// The operator pages' only script (served as a file: no inline script, so a strict CSP holds).
// It talks to the wallet the browser injects (EIP-1193 `window.ethereum`):
//  - sign-in: the server issues an EIP-4361 message, the wallet signs it (personal_sign);
//  - claim: the wallet sends claim(account, cumulative_amount, proof) to the RewardDistributor
//    with the operator's proof, and the page re-reads claimed / claimable from the chain;
//  - wallet change: the current payout wallet signs the server's change message.
"use strict";

(function () {
  const DECIMALS = 18n;

  function $(id) { return document.getElementById(id); }

  function show(el, text) { if (el) { el.textContent = text; el.hidden = !text; } }

  function wallet() {
    if (!window.ethereum || typeof window.ethereum.request !== "function") {
      throw new Error("No Ethereum wallet found in this browser: install or unlock one that holds your payout wallet.");
    }
    return window.ethereum;
  }

  function utf8Hex(text) {
    const bytes = new TextEncoder().encode(text);
    return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function tokens(value) {
    if (value === null || value === undefined) return "unknown (chain not reachable)";
    const v = BigInt(value);
    const whole = v / 10n ** DECIMALS;
    const frac = (v % 10n ** DECIMALS).toString().padStart(Number(DECIMALS), "0").slice(0, 6).replace(/0+$/, "");
    return whole.toLocaleString("en-US") + (frac ? "." + frac : "") + " NDR";
  }

  async function postJson(url, body) {
    const headers = { "Content-Type": "application/json", "Accept": "application/json" };
    const csrf = document.body.dataset.csrf;
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
    let data = {};
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail
        : Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : response.statusText;
      throw new Error(detail);
    }
    return data;
  }

  function walletError(err) {
    if (err && err.code === 4001) return "You declined the request in your wallet; nothing was sent.";
    return (err && err.message) || String(err);
  }

  // ---- sign-in -----------------------------------------------------------------------------
  async function signIn(box) {
    const status = $("siwe-status"), error = $("siwe-error");
    show(error, "");
    try {
      const eth = wallet();
      status.textContent = "Asking your wallet for its address…";
      const [address] = await eth.request({ method: "eth_requestAccounts" });
      status.textContent = "Asking the server for a sign-in message…";
      const challenge = await postJson(box.dataset.endpointChallenge, { address });
      status.textContent = "Sign the message in your wallet…";
      const signature = await eth.request({ method: "personal_sign", params: [utf8Hex(challenge.message), address] });
      status.textContent = "Checking the signature…";
      const result = await postJson(box.dataset.endpointSignIn, { message: challenge.message, signature });
      status.textContent = "Signed in.";
      window.location.assign(result.redirect);
    } catch (err) {
      status.textContent = "";
      show(error, walletError(err));
    }
  }

  // ---- claim -------------------------------------------------------------------------------
  let currentClaim = null;

  async function refreshClaim(panel) {
    const response = await fetch(panel.dataset.claimUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error("could not load your claim (" + response.status + ")");
    currentClaim = await response.json();
    panel.querySelector("[data-testid=cumulative]").textContent = tokens(currentClaim.cumulative_amount)
      + (currentClaim.published_epoch ? " (root of epoch " + currentClaim.published_epoch + ")" : " (no root published yet)");
    panel.querySelector("[data-testid=claimed]").textContent = tokens(currentClaim.claimed_onchain);
    panel.querySelector("[data-testid=claimable]").textContent = tokens(currentClaim.claimable_now);
    const button = $("claim-button");
    if (button) {
      const claimable = currentClaim.claimable_now === null ? 0n : BigInt(currentClaim.claimable_now);
      button.disabled = !(currentClaim.claim && claimable > 0n);
    }
    panel.dataset.loaded = String(Number(panel.dataset.loaded || 0) + 1);  // tests wait on it
    return currentClaim;
  }

  async function waitForReceipt(eth, hash) {
    for (let i = 0; i < 240; i++) {
      const receipt = await eth.request({ method: "eth_getTransactionReceipt", params: [hash] });
      if (receipt) return receipt;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error("the transaction " + hash + " was not mined in 2 minutes; check it in your wallet");
  }

  async function claim(panel) {
    const status = $("claim-status"), error = $("claim-error"), button = $("claim-button");
    show(error, "");
    button.disabled = true;
    try {
      const eth = wallet();
      const claimDoc = await refreshClaim(panel);
      if (!claimDoc.claim) throw new Error("Nothing to claim: the published root has no leaf for your wallet.");
      const [from] = await eth.request({ method: "eth_requestAccounts" });
      const chainId = await eth.request({ method: "eth_chainId" });
      if (BigInt(chainId) !== BigInt(panel.dataset.chainId)) {
        await eth.request({ method: "wallet_switchEthereumChain", params: [{ chainId: panel.dataset.chainId }] });
      }
      status.textContent = "Confirm the claim transaction in your wallet…";
      const hash = await eth.request({ method: "eth_sendTransaction", params: [{ from, to: claimDoc.claim.to, data: claimDoc.claim.data }] });
      status.textContent = "Transaction " + hash + " sent; waiting for it to be mined…";
      const receipt = await waitForReceipt(eth, hash);
      if (receipt.status !== "0x1" && receipt.status !== 1) throw new Error("the claim transaction " + hash + " reverted");
      await refreshClaim(panel);
      status.textContent = "Claimed in transaction " + hash + ".";
      status.dataset.txHash = hash;
    } catch (err) {
      status.textContent = "";
      show(error, walletError(err));
      try { await refreshClaim(panel); } catch (_) { /* keep the first error */ }
    }
  }

  // ---- wallet change -----------------------------------------------------------------------
  async function changeWallet(box) {
    const status = $("wallet-change-status"), error = $("wallet-change-error");
    show(error, "");
    try {
      const eth = wallet();
      const challenge = await postJson(box.dataset.endpointChallenge, { new_wallet: $("new-wallet").value.trim() });
      status.textContent = "Sign the change with your current wallet " + challenge.sign_with + "…";
      const signature = await eth.request({ method: "personal_sign", params: [utf8Hex(challenge.message), challenge.sign_with] });
      const result = await postJson(box.dataset.endpointChange, { message: challenge.message, signature });
      window.location.assign(result.redirect);
    } catch (err) {
      status.textContent = "";
      show(error, walletError(err));
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const siwe = $("siwe");
    if (siwe) $("siwe-button").addEventListener("click", () => signIn(siwe));
    const panel = $("claim");
    if (panel) {
      refreshClaim(panel).catch((err) => show($("claim-error"), err.message));
      const button = $("claim-button");
      if (button) button.addEventListener("click", () => claim(panel));
    }
    const change = $("wallet-change");
    if (change) $("wallet-change-button").addEventListener("click", () => changeWallet(change));
  });
})();
