"""The chain: Vyper contracts, the web3.py client, deployment, the dev chain and the outbox relay.

Modules:
  contracts   compile contracts/*.vy with the `vyper` package (no downloaded compiler)
  client      web3.py connection + signer: nonce management, receipts, revert reasons
  addresses   the deployed contract addresses file (settings.resolved_chain_addresses_file)
  deploy      deploy the registry, distributor (and a local reward token) and record addresses
  devchain    the local Ganache JSON-RPC chain as a `ServiceSpec` for `noderr dev up`
  relay       executes kind="chain" outbox rows against the contracts, exactly once per key
"""
